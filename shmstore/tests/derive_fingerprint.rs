//! Fingerprints and `Display` of derived layouts.
//!
//! The same definition must give the same fingerprint wherever it is
//! compiled; any change that alters what the bytes mean must change it.

use shmstore::ShmSafe;

mod original {
    use shmstore::ShmSafe;

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Sample {
        pub id: u32,
        pub value: f64,
    }
}

/// The identical definition in another module.
mod copy {
    use shmstore::ShmSafe;

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Sample {
        pub id: u32,
        pub value: f64,
    }
}

mod reordered {
    use shmstore::ShmSafe;

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Sample {
        pub value: f64,
        pub id: u32,
    }
}

mod retyped {
    use shmstore::ShmSafe;

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Sample {
        pub id: i32,
        pub value: f64,
    }
}

mod renamed_field {
    use shmstore::ShmSafe;

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Sample {
        pub key: u32,
        pub value: f64,
    }
}

mod renamed_type {
    use shmstore::ShmSafe;

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Measurement {
        pub id: u32,
        pub value: f64,
    }
}

mod pinned {
    use shmstore::ShmSafe;

    /// Renamed in code, but pinned to the old recorded name.
    #[derive(ShmSafe)]
    #[repr(C)]
    #[shm(name = "Sample")]
    pub struct Measurement {
        pub id: u32,
        pub value: f64,
    }
}

mod wrappers {
    use shmstore::ShmSafe;

    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Celsius(pub f64);

    pub mod transparent {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(transparent)]
        pub struct Celsius(pub f64);
    }

    pub mod aligned {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(C, align(16))]
        pub struct Celsius(pub f64);
    }
}

mod enums {
    pub mod a {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(u8)]
        pub enum State {
            Idle,
            Busy,
        }
    }
    pub mod same {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(u8)]
        pub enum State {
            Idle,
            Busy,
        }
    }
    pub mod wider {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(u16)]
        pub enum State {
            Idle,
            Busy,
        }
    }
    pub mod renumbered {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(u8)]
        pub enum State {
            Idle,
            Busy = 2,
        }
    }
    pub mod renamed_variant {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(u8)]
        pub enum State {
            Idle,
            Working,
        }
    }
    pub mod extra_variant {
        use shmstore::ShmSafe;

        #[derive(ShmSafe)]
        #[repr(u8)]
        pub enum State {
            Idle,
            Busy,
            Done,
        }
    }
}

#[test]
fn same_definition_in_two_modules_has_the_same_fingerprint() {
    assert_eq!(original::Sample::LAYOUT, copy::Sample::LAYOUT);
    assert_eq!(original::Sample::FINGERPRINT, copy::Sample::FINGERPRINT);
    assert_eq!(
        enums::a::State::FINGERPRINT,
        enums::same::State::FINGERPRINT
    );
}

#[test]
fn fingerprint_is_the_layouts() {
    assert_eq!(
        original::Sample::FINGERPRINT,
        original::Sample::LAYOUT.fingerprint()
    );
}

#[test]
fn any_meaningful_change_changes_the_fingerprint() {
    let base = original::Sample::FINGERPRINT;
    let changed = [
        ("reordered fields", reordered::Sample::FINGERPRINT),
        ("changed field type", retyped::Sample::FINGERPRINT),
        ("renamed field", renamed_field::Sample::FINGERPRINT),
        ("renamed type", renamed_type::Measurement::FINGERPRINT),
    ];
    for (what, fp) in changed {
        assert_ne!(fp, base, "{what} kept the fingerprint");
    }
    // Sizes are equal, so only the description tells them apart.
    assert_eq!(retyped::Sample::LAYOUT.size, original::Sample::LAYOUT.size);
}

#[test]
fn pinned_name_keeps_the_fingerprint_across_a_rename() {
    assert_eq!(pinned::Measurement::LAYOUT.name, "Sample");
    assert_eq!(
        pinned::Measurement::FINGERPRINT,
        original::Sample::FINGERPRINT
    );
    assert_eq!(renamed_type::Measurement::LAYOUT.name, "Measurement");
}

#[test]
fn repr_changes_change_the_fingerprint() {
    use wrappers::{aligned, transparent, Celsius};
    assert_eq!(Celsius::LAYOUT.size, transparent::Celsius::LAYOUT.size);
    assert_ne!(Celsius::FINGERPRINT, transparent::Celsius::FINGERPRINT);
    assert_ne!(Celsius::FINGERPRINT, aligned::Celsius::FINGERPRINT);
    assert_ne!(
        transparent::Celsius::FINGERPRINT,
        aligned::Celsius::FINGERPRINT
    );
}

#[test]
fn enum_changes_change_the_fingerprint() {
    let base = enums::a::State::FINGERPRINT;
    for (what, fp) in [
        ("wider repr", enums::wider::State::FINGERPRINT),
        ("renumbered", enums::renumbered::State::FINGERPRINT),
        (
            "renamed variant",
            enums::renamed_variant::State::FINGERPRINT,
        ),
        ("extra variant", enums::extra_variant::State::FINGERPRINT),
    ] {
        assert_ne!(fp, base, "{what} kept the fingerprint");
    }
}

#[test]
fn nested_change_changes_the_outer_fingerprint() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Outer1 {
        s: original::Sample,
    }
    mod inner {
        use shmstore::ShmSafe;
        #[derive(ShmSafe)]
        #[repr(C)]
        #[shm(name = "Outer1")]
        pub struct Outer2 {
            pub s: super::retyped::Sample,
        }
    }
    assert_eq!(inner::Outer2::LAYOUT.name, Outer1::LAYOUT.name);
    assert_ne!(Outer1::FINGERPRINT, inner::Outer2::FINGERPRINT);
}

#[test]
fn display_lists_every_field() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Reading {
        sample: original::Sample,
        state: enums::a::State,
        ok: bool,
        history: [u16; 3],
    }
    let _ = (enums::a::State::Idle, enums::a::State::Busy);
    let text = Reading::LAYOUT.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "Reading (size 24, align 8, fingerprint {:#018x})",
            Reading::FINGERPRINT
        )
    );
    assert_eq!(
        &lines[1..],
        [
            "  sample: Sample (offset 0, size 16, align 8)",
            "    id: u32 (offset 0, size 4, align 4)",
            "    value: f64 (offset 8, size 8, align 8)",
            "  state: State (offset 16, size 1, align 1)",
            "    Idle = 0 (u8)",
            "    Busy = 1 (u8)",
            "  ok: bool (offset 17, size 1, align 1)",
            "  history: [u16; 3] (offset 18, size 6, align 2)",
        ]
    );
}
