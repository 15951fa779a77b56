//! Separately compiled definitions of one type share objects; a changed
//! definition is refused with both layouts shown.

use std::process::Command;

use shmstore::{Error, ShmSafe, Store};
use shmstore_tests::{Child, Finished, StoreGuard};

/// A third, independent copy of the definition in `bin/shape_a.rs` and
/// `bin/shape_b.rs`.
#[derive(ShmSafe, Debug)]
#[repr(C)]
struct Shape {
    id: u32,
    scale: f64,
    tags: [u16; 4],
}

fn run(bin: &str, store: &str) -> Finished {
    let mut cmd = Command::new(bin);
    cmd.arg(store);
    Child::spawn(cmd).wait()
}

fn fingerprint_of(out: &Finished) -> u64 {
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint 0x"))
        .unwrap_or_else(|| panic!("no fingerprint line\n{out}"));
    u64::from_str_radix(line, 16).unwrap()
}

#[test]
fn separately_compiled_identical_definitions_share_objects_and_a_changed_one_is_refused() {
    let guard = StoreGuard::unique("shapes");

    let a = run(env!("CARGO_BIN_EXE_shape_a"), guard.name());
    assert!(a.status.success(), "shape_a failed\n{a}");

    // shape_b reads what shape_a wrote.
    let b = run(env!("CARGO_BIN_EXE_shape_b"), guard.name());
    assert!(b.status.success(), "shape_b failed\n{b}");
    assert_eq!(fingerprint_of(&a), fingerprint_of(&b));
    assert_eq!(fingerprint_of(&a), Shape::FINGERPRINT);
    let lines: Vec<&str> = b
        .stdout
        .lines()
        .filter(|l| l.starts_with("shape"))
        .collect();
    assert_eq!(
        lines,
        [
            "shape id=42 scale=2.5 tags=[1, 2, 3, 65535]",
            "shapes id=100 scale=-0 tags=[0, 0, 0, 0]",
            "shapes id=101 scale=-0.25 tags=[1, 1, 1, 1]",
            "shapes id=102 scale=-0.5 tags=[2, 2, 2, 2]",
        ],
        "\n{b}"
    );

    // So does this test binary, a third compilation of the definition.
    let store = Store::open(guard.name()).unwrap();
    let shape = store.get::<Shape>("shape").unwrap();
    assert_eq!(
        (shape.id, shape.scale, shape.tags),
        (42, 2.5, [1, 2, 3, 65535])
    );
    assert_eq!(store.get_slice::<Shape>("shapes").unwrap().len(), 3);

    // The changed definition is refused, with both layouts in the message.
    let changed = run(env!("CARGO_BIN_EXE_shape_changed"), guard.name());
    assert!(changed.status.success(), "shape_changed failed\n{changed}");
    assert_ne!(fingerprint_of(&changed), Shape::FINGERPRINT);
    for what in ["object", "slice"] {
        let start = format!("--- {what} ---");
        let message = changed
            .stdout
            .split(&start)
            .nth(1)
            .and_then(|rest| rest.split("--- end ---").next())
            .unwrap_or_else(|| panic!("no {what} message\n{changed}"));
        let (expected, found) = message
            .split_once("found:")
            .unwrap_or_else(|| panic!("no expected/found parts in {message}"));
        // What shape_changed asked for...
        for field in [
            "Shape (size 16, align 4",
            "id: u32 (offset 0, size 4, align 4)",
            "tags: [u16; 4] (offset 4, size 8, align 2)",
            "scale: f32 (offset 12, size 4, align 4)",
        ] {
            assert!(
                expected.contains(field),
                "{what}: expected part lacks {field:?}:\n{message}"
            );
        }
        // ...and what shape_a stored.
        for field in [
            "Shape (size 24, align 8",
            "id: u32 (offset 0, size 4, align 4)",
            "scale: f64 (offset 8, size 8, align 8)",
            "tags: [u16; 4] (offset 16, size 8, align 2)",
        ] {
            assert!(
                found.contains(field),
                "{what}: found part lacks {field:?}:\n{message}"
            );
        }
        assert!(
            message.contains(&format!("{:#018x}", Shape::FINGERPRINT)),
            "{message}"
        );
        assert!(
            message.contains(&format!("{:#018x}", fingerprint_of(&changed))),
            "{message}"
        );
    }

    // Two types named Shape now live side by side, told apart by fingerprint.
    let mut entries = store.entries().unwrap();
    entries.sort_by(|x, y| x.name.cmp(&y.name));
    let summary: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.type_name.as_str(),
                e.fingerprint,
                e.size,
                e.len,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("changed", "Shape", fingerprint_of(&changed), 16, None),
            ("shape", "Shape", Shape::FINGERPRINT, 24, None),
            ("shapes", "Shape", Shape::FINGERPRINT, 72, Some(3)),
        ]
    );
    assert!(matches!(
        store.get::<Shape>("changed"),
        Err(Error::TypeMismatch { .. })
    ));
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check}");
    assert_eq!(check.types, 2);
}
