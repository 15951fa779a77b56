//! Hygiene: the derive works when the runtime crate is only reachable under
//! another name. This test's crate depends on it as `shm`, so a path to
//! the runtime crate hard-coded in the generated code would not resolve.
//! It also shadows the names the generated code uses (`core`, `Result`,
//! `Option`, `Ok`, ...) to prove those are fully qualified.

// Shadow what generated code must not rely on: these items take precedence
// over the prelude and the extern prelude for relative paths.
#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Ok;
#[allow(dead_code)]
struct Err;
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Some;
#[allow(dead_code)]
trait ShmSafe {}

#[derive(shm::ShmSafe)]
#[shm(crate = "shm")]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(shm::ShmSafe)]
#[shm(crate = ::shm, name = "renamed::Pair")]
#[repr(C)]
struct Pair<T> {
    flag: bool,
    value: T,
}

#[derive(shm::ShmSafe)]
#[shm(crate = "shm")]
#[repr(transparent)]
struct Tuple(u32);

#[derive(shm::ShmSafe)]
#[shm(crate = "shm")]
#[repr(u8)]
enum Kind {
    A = 1,
    B,
}

fn layout<T: shm::ShmSafe>() -> &'static shm::TypeLayout {
    T::LAYOUT
}

#[test]
fn derives_through_a_renamed_crate() {
    let point = layout::<Point>();
    assert_eq!(point.name, "Point");
    assert_eq!(point.size, 16);

    let pair = layout::<Pair<Point>>();
    assert_eq!(pair.name, "renamed::Pair");
    const { assert!(<Pair<Point> as shm::ShmSafe>::HAS_INVALID_BIT_PATTERNS) };
    assert_ne!(
        <Pair<Point> as shm::ShmSafe>::FINGERPRINT,
        <Pair<Tuple> as shm::ShmSafe>::FINGERPRINT
    );

    assert_eq!(layout::<Tuple>().size, 4);
    let _ = (Kind::A, Kind::B);
    const { assert!(<Kind as shm::ShmSafe>::HAS_INVALID_BIT_PATTERNS) };
}

#[test]
fn generated_checks_run() {
    let bytes: [u8; 1] = [3];
    // SAFETY: a one-byte, aligned, initialised read.
    let err = unsafe { <Kind as shm::ShmSafe>::check_bytes(bytes.as_ptr().cast()) };
    assert_eq!(err.unwrap_err().bits, 3);
    let bytes: [u8; 1] = [2];
    // SAFETY: as above.
    let ok = unsafe { <Kind as shm::ShmSafe>::check_bytes(bytes.as_ptr().cast()) };
    assert!(ok.is_ok());
}
