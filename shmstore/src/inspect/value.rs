//! [`Value`]: a stored value read through its recorded layout, by a
//! process that does not have its Rust type.

use core::fmt;

use super::{printable, LockState};
use crate::arena::mem::Mem;
use crate::arena::nested::read_nested_any;
use crate::arena::walk::Targets;
use crate::containers::layout::{shape_of, Shape, LIVE};
use crate::layout::{LayoutDesc, LayoutDescKind};
use crate::sys::pthread::{observe, RawMutex, OWNER_WORD};

/// The deepest nesting [`Inspection::value`](super::Inspection::value)
/// reads, whatever [`DumpLimits::max_depth`] asks: values nested deeper
/// are [`Value::Elided`].
///
/// Reading a value, printing it, turning it into JSON and dropping it each
/// go down one level per level of nesting (a `Value` is a tree), so the
/// depth must be bounded for them to fit on a thread's stack: 256 levels
/// (a 128-link `RelPtr` list: two levels a link, the node and its target)
/// take under 1 MiB of stack in a debug build (measured: 512 levels
/// overflow 1.5 MiB), half the 2 MiB a spawned thread gets; a release
/// build takes less.
pub const MAX_DEPTH: u32 = 256;

/// How much of a value [`Inspection::value`](super::Inspection::value)
/// reads: a list, map or string longer than this is cut (its full length
/// is still given), and values nested deeper are elided, so that a huge
/// vector or a long linked list prints in bounded time and space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpLimits {
    /// Elements of a list or map, and bytes / 16 of a string, at most
    /// (default 1000).
    pub max_items: u64,
    /// Levels of nesting (struct fields, elements, containers, pointers)
    /// at most (default 64; at most [`MAX_DEPTH`], whatever is asked).
    pub max_depth: u32,
}

impl Default for DumpLimits {
    fn default() -> Self {
        DumpLimits {
            max_items: 1000,
            max_depth: 64,
        }
    }
}

/// A value read from a store through its recorded layout.
///
/// [`Display`](fmt::Display) prints it as Rust code would spell it
/// (`Point { x: 1.0, y: 2.0 }`, `Mode::Fast` as `Fast`, a string quoted);
/// the alternate form (`{:#}`) on several indented lines.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `()`, `PhantomData`.
    Unit,
    /// A `bool` or `AtomicBool`.
    Bool(bool),
    /// A `char`.
    Char(char),
    /// An unsigned integer (`u8` … `u128`, `AtomicU*`).
    UInt(u128),
    /// A signed integer (`i8` … `i128`, `AtomicI*`).
    Int(i128),
    /// An `f32`.
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A `ShmString` or `FixedString`, whole or cut at the limit.
    Str(String),
    /// A fieldless enum's variant.
    Enum {
        /// The enum's name.
        ty: String,
        /// The variant's name.
        variant: String,
        /// Its discriminant.
        discriminant: i128,
    },
    /// A struct: its fields in declaration order (tuple fields are named
    /// `"0"`, `"1"`, ...).
    Struct {
        /// The struct's name.
        ty: String,
        /// Field names and values.
        fields: Vec<(String, Value)>,
    },
    /// An array, a slice, a `ShmVec` or a `FixedVec`: `items` holds the
    /// first elements (all of them unless cut at the limit), `len` counts
    /// them all.
    List {
        /// Elements in all.
        len: u64,
        /// The elements read.
        items: Vec<Value>,
    },
    /// A `ShmMap`: its live entries, in slot order.
    Map {
        /// Entries in all.
        len: u64,
        /// The entries read (key, value).
        entries: Vec<(Value, Value)>,
    },
    /// A `RelPtr`: `None` for the null pointer.
    Ptr(Option<Box<Value>>),
    /// A `ShmMutex` and the data it guards, read without locking it.
    Mutex {
        /// The lock's state when the copy was made.
        lock: LockState,
        /// A holder died and no one has marked the data consistent since.
        owner_died: bool,
        /// The data (read as it was; while a holder was changing it, it may
        /// be half-updated, or a container in it cannot be followed).
        data: Box<Value>,
    },
    /// Bytes with no layout to read them by (a `Pod` of an unknown type,
    /// an opaque type of a later version), at most `max_items` of them.
    Bytes(Vec<u8>),
    /// Not read: deeper than the depth limit, or past the node budget.
    Elided,
    /// Bytes that are not a valid value of their type, or a container
    /// that cannot be followed: why.
    Invalid(String),
}

/// Reads values out of a copy of a segment.
pub(super) struct Reader<'l> {
    mem: Mem,
    store_id: u64,
    limits: &'l DumpLimits,
    /// `limits.max_depth`, at most [`MAX_DEPTH`].
    max_depth: u32,
    /// Nodes left to read: bounds the work (and memory) of one value.
    budget: u64,
}

impl<'l> Reader<'l> {
    pub(super) fn new(mem: Mem, store_id: u64, limits: &'l DumpLimits) -> Reader<'l> {
        Reader {
            mem,
            store_id,
            max_depth: limits.max_depth.min(MAX_DEPTH),
            limits,
            budget: 1 << 20,
        }
    }

    /// The value at `off` of layout `d`.
    pub(super) fn value(&mut self, off: u64, d: &LayoutDesc) -> Value {
        match Targets::of(d) {
            Ok(t) => self.read(&t, off, d, 0),
            Err(e) => Value::Invalid(e.to_string()),
        }
    }

    /// `len` values of layout `d` from `off` (a slice object).
    pub(super) fn slice(&mut self, off: u64, d: &LayoutDesc, len: u64) -> Value {
        match Targets::of(d) {
            Ok(t) => self.list(&t, off, d, d.size, len, 0),
            Err(e) => Value::Invalid(e.to_string()),
        }
    }

    fn list(
        &mut self,
        t: &Targets<'_>,
        off: u64,
        d: &LayoutDesc,
        stride: u64,
        len: u64,
        depth: u32,
    ) -> Value {
        let mut items = Vec::new();
        for i in 0..len.min(self.limits.max_items) {
            let at = i.checked_mul(stride).and_then(|o| o.checked_add(off));
            let Some(at) = at else {
                items.push(Value::Invalid("an element's offset overflows".into()));
                break;
            };
            let v = self.read(t, at, d, depth + 1);
            let stop = matches!(v, Value::Elided);
            items.push(v);
            if stop {
                break;
            }
        }
        Value::List { len, items }
    }

    fn bytes(&self, off: u64, len: u64) -> Result<Vec<u8>, Value> {
        self.mem
            .read_bytes(off, len)
            .map_err(|e| Value::Invalid(e.to_string()))
    }

    fn read(&mut self, t: &Targets<'_>, off: u64, d: &LayoutDesc, depth: u32) -> Value {
        if depth > self.max_depth || self.budget == 0 {
            return Value::Elided;
        }
        self.budget -= 1;
        let d = match t.resolve(d) {
            Ok(d) => d,
            Err(e) => return Value::Invalid(e.to_string()),
        };
        match &d.kind {
            LayoutDescKind::Primitive => self.primitive(off, d),
            LayoutDescKind::Enum { repr, variants } => {
                let raw = match self.primitive(off, repr) {
                    Value::UInt(u) => i128::try_from(u).ok(),
                    Value::Int(i) => Some(i),
                    _ => None,
                };
                let Some(raw) = raw else {
                    return Value::Invalid(format!("{}: unreadable discriminant", d.name));
                };
                match variants.iter().find(|v| v.discriminant == raw) {
                    Some(v) => Value::Enum {
                        ty: d.name.clone(),
                        variant: v.name.clone(),
                        discriminant: raw,
                    },
                    None => Value::Invalid(format!("{}: {raw} is not a variant", d.name)),
                }
            }
            LayoutDescKind::Struct { fields, .. } => {
                if let Some(v) = self.fixed(t, off, d, depth) {
                    return v;
                }
                let mut out = Vec::with_capacity(fields.len());
                for f in fields {
                    let v = match off.checked_add(f.offset) {
                        Some(at) => self.read(t, at, &f.ty, depth + 1),
                        None => Value::Invalid("a field offset overflows".into()),
                    };
                    out.push((f.name.clone(), v));
                }
                Value::Struct {
                    ty: d.name.clone(),
                    fields: out,
                }
            }
            LayoutDescKind::Array { elem, len } => {
                let stride = match t.resolve(elem) {
                    Ok(e) => e.size,
                    Err(e) => return Value::Invalid(e.to_string()),
                };
                self.list(t, off, elem, stride, *len, depth)
            }
            LayoutDescKind::Opaque { params } => match (d.name.as_str(), params.as_slice()) {
                ("ShmMutex", [data]) => self.mutex(t, off, data, depth),
                ("PhantomData", _) => Value::Unit,
                _ => self.opaque(off, d.size),
            },
            LayoutDescKind::Container { params } => self.container(t, off, d, params, depth),
            LayoutDescKind::BackRef { .. } => {
                Value::Invalid("a layout's back reference points nowhere".into())
            }
        }
    }

    fn opaque(&self, off: u64, size: u64) -> Value {
        match self.bytes(off, size.min(self.limits.max_items)) {
            Ok(b) => Value::Bytes(b),
            Err(v) => v,
        }
    }

    fn primitive(&self, off: u64, d: &LayoutDesc) -> Value {
        let bytes = match self.bytes(off, d.size) {
            Ok(b) => b,
            Err(v) => return v,
        };
        let unsigned = |b: &[u8]| {
            let mut w = [0u8; 16];
            if cfg!(target_endian = "big") {
                w[16 - b.len()..].copy_from_slice(b);
                u128::from_be_bytes(w)
            } else {
                w[..b.len()].copy_from_slice(b);
                u128::from_le_bytes(w)
            }
        };
        let width = |n: &str| -> Option<u64> {
            let n = n.strip_prefix("Atomic").unwrap_or(n);
            let bits: u64 = n.get(1..)?.parse().ok()?;
            Some(bits / 8)
        };
        let name = d.name.as_str();
        let plain = name.strip_prefix("Atomic").unwrap_or(name);
        match plain {
            "bool" | "Bool" if d.size == 1 => match bytes[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => Value::Invalid(format!("{name}: {b:#04x} is not 0 or 1")),
            },
            "char" if d.size == 4 => {
                let c = unsigned(&bytes) as u32;
                match char::from_u32(c) {
                    Some(c) => Value::Char(c),
                    None => Value::Invalid(format!("char: {c:#x} is not a scalar value")),
                }
            }
            "()" if d.size == 0 => Value::Unit,
            "f32" if d.size == 4 => Value::F32(f32::from_bits(unsigned(&bytes) as u32)),
            "f64" if d.size == 8 => Value::F64(f64::from_bits(unsigned(&bytes) as u64)),
            _ if plain.starts_with('u')
                && width(name) == Some(d.size)
                && matches!(d.size, 1 | 2 | 4 | 8 | 16) =>
            {
                Value::UInt(unsigned(&bytes))
            }
            _ if plain.starts_with(['i', 'I'])
                && width(name) == Some(d.size)
                && matches!(d.size, 1 | 2 | 4 | 8 | 16) =>
            {
                // Sign-extend from the value's width.
                let shift = 128 - 8 * d.size as u32;
                Value::Int(((unsigned(&bytes) << shift) as i128) >> shift)
            }
            _ => Value::Bytes(bytes),
        }
    }

    /// `FixedString` and `FixedVec`, recognised by name and fields.
    fn fixed(&mut self, t: &Targets<'_>, off: u64, d: &LayoutDesc, depth: u32) -> Option<Value> {
        let LayoutDescKind::Struct { fields, .. } = &d.kind else {
            return None;
        };
        let [len_f, items_f] = fields.as_slice() else {
            return None;
        };
        let LayoutDescKind::Array { elem, len: cap } = &items_f.ty.kind else {
            return None;
        };
        let len_at = off.checked_add(len_f.offset)?;
        let items_at = off.checked_add(items_f.offset)?;
        let len = match self.primitive(len_at, &len_f.ty) {
            Value::UInt(n) => u64::try_from(n).unwrap_or(u64::MAX),
            other => return Some(other),
        };
        match (d.name.as_str(), len_f.name.as_str(), items_f.name.as_str()) {
            ("FixedString", "len", "bytes") if elem.name == "u8" => {
                if len > *cap {
                    return Some(Value::Invalid(format!(
                        "FixedString: length {len} exceeds its {cap} bytes"
                    )));
                }
                Some(self.string(items_at, len))
            }
            ("FixedVec", "len", "items") => {
                if len > *cap {
                    return Some(Value::Invalid(format!(
                        "FixedVec: length {len} exceeds its {cap} slots"
                    )));
                }
                let stride = t.resolve(elem).ok()?.size;
                Some(self.list(t, items_at, elem, stride, len, depth))
            }
            _ => None,
        }
    }

    /// `len` bytes of UTF-8 at `off`, cut at `max_items × 16` bytes.
    fn string(&self, off: u64, len: u64) -> Value {
        let cut = len.min(self.limits.max_items.saturating_mul(16));
        match self.bytes(off, cut) {
            Ok(b) => match String::from_utf8(b) {
                Ok(s) => Value::Str(s),
                // Cut in the middle of a character: keep the valid part.
                Err(e) if cut < len && e.utf8_error().error_len().is_none() => {
                    let valid = e.utf8_error().valid_up_to();
                    let mut b = e.into_bytes();
                    b.truncate(valid);
                    Value::Str(String::from_utf8(b).unwrap_or_default())
                }
                Err(e) => Value::Invalid(format!("string: not UTF-8 ({})", e.utf8_error())),
            },
            Err(v) => v,
        }
    }

    fn mutex(&mut self, t: &Targets<'_>, off: u64, data: &LayoutDesc, depth: u32) -> Value {
        let raw = core::mem::size_of::<RawMutex>() as u64;
        let words = (
            self.mem.u32(off),
            off.checked_add(OWNER_WORD).map(|o| self.mem.u32(o)),
            off.checked_add(raw).map(|o| self.mem.u32(o)),
        );
        let (Ok(word), Some(Ok(owner)), Some(Ok(state))) = words else {
            return Value::Invalid("the mutex's words cannot be read".into());
        };
        let inner = match t.resolve(data) {
            Ok(d) => d,
            Err(e) => return Value::Invalid(e.to_string()),
        };
        let data =
            match crate::sync::mutex_data_offset(inner.align).and_then(|d| off.checked_add(d)) {
                Some(at) => self.read(t, at, data, depth + 1),
                None => Value::Invalid("the mutex's data offset overflows".into()),
            };
        Value::Mutex {
            lock: LockState::of(observe(word, owner)),
            // Bit 0 of the state word after the pthread mutex (see
            // `ShmMutex`'s layout).
            owner_died: state & 1 != 0,
            data: Box::new(data),
        }
    }

    fn container(
        &mut self,
        t: &Targets<'_>,
        off: u64,
        d: &LayoutDesc,
        params: &[LayoutDesc],
        depth: u32,
    ) -> Value {
        let Some(shape) = shape_of(&d.name, params) else {
            return match (d.name.as_str(), params) {
                // `Pod<T>` is `T`, transparent.
                ("Pod", [p]) => self.read(t, off, p, depth + 1),
                _ => self.opaque(off, d.size),
            };
        };
        let empty = || match (shape, d.name.as_str()) {
            (Shape::Bytes, _) => Value::Str(String::new()),
            (Shape::Map { .. }, _) => Value::Map {
                len: 0,
                entries: Vec::new(),
            },
            (_, "RelPtr") => Value::Ptr(None),
            _ => Value::List {
                len: 0,
                items: Vec::new(),
            },
        };
        let [store, token, blk] = match self.mem.words::<3>(off) {
            Ok((w, _)) => w,
            Err(e) => return Value::Invalid(e.to_string()),
        };
        if blk == 0 {
            return empty();
        }
        if store != self.store_id {
            return Value::Invalid(format!(
                "{} of another store (id {store:#x}): its buffer is not in this one",
                d.name
            ));
        }
        // The parameters' own layouts (a back reference resolved), for
        // the element size the block is checked against.
        let resolved: Vec<LayoutDesc> = match params
            .iter()
            .map(|p| t.resolve(p))
            .collect::<crate::Result<Vec<&LayoutDesc>>>()
        {
            Ok(ps) => ps.into_iter().cloned().collect(),
            Err(e) => return Value::Invalid(e.to_string()),
        };
        let (size, align) = shape.element(&resolved);
        let n = match read_nested_any(&self.mem, blk, size, align, token) {
            Ok((n, _)) => n,
            Err(e) => return Value::Invalid(format!("{}: {e}", d.name)),
        };
        match (shape, params) {
            (Shape::Bytes, _) => self.string(n.elems, n.len),
            (Shape::Elements, [p]) if d.name == "RelPtr" => {
                if n.len == 0 {
                    Value::Ptr(None)
                } else {
                    Value::Ptr(Some(Box::new(self.read(t, n.elems, p, depth + 1))))
                }
            }
            (Shape::Elements, [p]) => self.list(t, n.elems, p, size, n.len, depth),
            (
                Shape::Map {
                    key_off,
                    value_off,
                    slot,
                    ..
                },
                [k, v],
            ) => {
                let mut entries = Vec::new();
                let mut len = 0u64;
                for i in 0..n.cap {
                    let Some(at) = i.checked_mul(slot).and_then(|o| o.checked_add(n.elems)) else {
                        break;
                    };
                    match self.mem.u64(at) {
                        Ok(meta) if meta & LIVE != 0 => {}
                        Ok(_) => continue,
                        Err(e) => return Value::Invalid(e.to_string()),
                    }
                    len += 1;
                    if (entries.len() as u64) < self.limits.max_items {
                        let key = self.read(t, at + key_off, k, depth + 1);
                        let value = self.read(t, at + value_off, v, depth + 1);
                        entries.push((key, value));
                    }
                }
                Value::Map { len, entries }
            }
            _ => Value::Invalid(format!("{}: unexpected parameters", d.name)),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_value(f, self, 0, f.alternate())
    }
}

/// Writes one item of a list, struct or map.
type Part<'a> = Box<dyn Fn(&mut fmt::Formatter<'_>) -> fmt::Result + 'a>;

/// Nested values whose one-line form is at most this long are printed on
/// one line by the pretty form too.
const SHORT: usize = 60;

/// The pretty form indents at most this many levels (four spaces each):
/// deeper levels are printed at this indentation, so that the output grows
/// with the value, not with the square of its depth.
const MAX_INDENT: usize = 16;

/// A writer that takes at most `left` characters, then fails: the one-line
/// form of a value is only wanted if it is short, and rendering it whole at
/// every level of a deep value would take time quadratic in its depth.
struct Capped {
    out: String,
    left: usize,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.chars().count();
        if n > self.left {
            self.left = 0;
            return Err(fmt::Error);
        }
        self.left -= n;
        self.out.push_str(s);
        Ok(())
    }
}

/// The one-line form of `v`, if it is at most [`SHORT`] characters.
fn short_form(v: &Value) -> Option<String> {
    use fmt::Write as _;
    let mut c = Capped {
        out: String::new(),
        left: SHORT,
    };
    write!(c, "{v}").ok().map(|()| c.out)
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &Value, level: usize, pretty: bool) -> fmt::Result {
    if pretty && level > 0 {
        if let Some(one_line) = short_form(v) {
            return f.write_str(&one_line);
        }
    }
    let pad = |n: usize| "    ".repeat(n.min(MAX_INDENT));
    // Items separated by ", " on one line, or one per line, indented.
    let items =
        |f: &mut fmt::Formatter<'_>, open: &str, close: &str, parts: Vec<Part<'_>>, more: u64| {
            if parts.is_empty() && more == 0 {
                return write!(f, "{open}{close}");
            }
            let spaced = open.ends_with(" {");
            f.write_str(open)?;
            let n = parts.len();
            for (i, p) in parts.into_iter().enumerate() {
                if pretty {
                    write!(f, "\n{}", pad(level + 1))?;
                } else if i > 0 {
                    f.write_str(", ")?;
                } else if spaced {
                    f.write_str(" ")?;
                }
                p(f)?;
                if pretty {
                    f.write_str(",")?;
                }
            }
            if more > 0 {
                if pretty {
                    write!(f, "\n{}… {more} more", pad(level + 1))?;
                } else {
                    write!(f, "{}… {more} more", if n > 0 { ", " } else { "" })?;
                }
            }
            if pretty {
                write!(f, "\n{}", pad(level))?;
            } else if spaced {
                f.write_str(" ")?;
            }
            f.write_str(close)
        };
    match v {
        Value::Unit => f.write_str("()"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Char(c) => write!(f, "{c:?}"),
        Value::UInt(u) => write!(f, "{u}"),
        Value::Int(i) => write!(f, "{i}"),
        Value::F32(x) => write!(f, "{x:?}"),
        Value::F64(x) => write!(f, "{x:?}"),
        Value::Str(s) => write!(f, "{s:?}"),
        Value::Enum { variant, .. } => f.write_str(&printable(variant)),
        Value::Struct { ty, fields } => {
            let ty = printable(ty);
            if fields.is_empty() {
                return f.write_str(&ty);
            }
            let tuple = fields
                .iter()
                .enumerate()
                .all(|(i, (n, _))| *n == i.to_string());
            let parts = fields
                .iter()
                .map(|(name, v)| {
                    Box::new(move |f: &mut fmt::Formatter<'_>| {
                        if !tuple {
                            write!(f, "{}: ", printable(name))?;
                        }
                        write_value(f, v, level + 1, pretty)
                    }) as Part<'_>
                })
                .collect();
            if tuple {
                items(f, &format!("{ty}("), ")", parts, 0)
            } else {
                items(f, &format!("{ty} {{"), "}", parts, 0)
            }
        }
        Value::List { len, items: elems } => {
            let parts = elems
                .iter()
                .map(|v| {
                    Box::new(move |f: &mut fmt::Formatter<'_>| write_value(f, v, level + 1, pretty))
                        as Part<'_>
                })
                .collect();
            items(f, "[", "]", parts, len.saturating_sub(elems.len() as u64))
        }
        Value::Map { len, entries } => {
            let parts = entries
                .iter()
                .map(|(k, v)| {
                    Box::new(move |f: &mut fmt::Formatter<'_>| {
                        write_value(f, k, level + 1, pretty)?;
                        f.write_str(": ")?;
                        write_value(f, v, level + 1, pretty)
                    }) as Part<'_>
                })
                .collect();
            items(f, "{", "}", parts, len.saturating_sub(entries.len() as u64))
        }
        Value::Ptr(None) => f.write_str("null"),
        Value::Ptr(Some(v)) => {
            f.write_str("&")?;
            write_value(f, v, level, pretty)
        }
        Value::Mutex {
            lock,
            owner_died,
            data,
        } => {
            write!(f, "ShmMutex<{lock}")?;
            if *owner_died {
                f.write_str(", inconsistent")?;
            }
            f.write_str(">(")?;
            write_value(f, data, level, pretty)?;
            f.write_str(")")
        }
        Value::Bytes(b) => {
            f.write_str("bytes[")?;
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{x:02x}")?;
            }
            f.write_str("]")
        }
        Value::Elided => f.write_str("…"),
        Value::Invalid(why) => write!(f, "<invalid: {}>", printable(why)),
    }
}
