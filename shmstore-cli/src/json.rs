//! The JSON forms of what the commands report (schema version
//! [`SCHEMA`]; documented in `shmstore help json` and the README).

use serde_json::{json, Map, Value as Json};
use shmstore::inspect::{
    Holder, Inspection, LockState, ObjectInfo, ProcessInfo, SegmentInfo, SegmentKind, StoreSummary,
    Value,
};
use shmstore::layout::{LayoutDesc, LayoutDescKind};
use shmstore::CheckReport;

/// The version of the JSON schema: every document carries it as
/// `"schema"`; it changes only when a field changes meaning or goes away
/// (fields may be added).
pub const SCHEMA: u64 = 1;

/// A document: `{"schema": 1, "command": ..., ...fields}`.
pub fn document(command: &str, fields: Json) -> Json {
    let mut m = Map::new();
    m.insert("schema".into(), json!(SCHEMA));
    m.insert("command".into(), json!(command));
    if let Json::Object(fields) = fields {
        m.extend(fields);
    }
    Json::Object(m)
}

pub fn hex(x: u64) -> Json {
    json!(format!("{x:#018x}"))
}

pub fn lock(l: &LockState) -> Json {
    let (state, tid, pid) = match *l {
        LockState::Free => ("free", None, None),
        LockState::Held { tid, pid } => ("held", Some(tid), pid),
        LockState::OwnerDied => ("owner-died", None, None),
        LockState::Recovering { tid, pid } => ("recovering", Some(tid), pid),
        LockState::Unrecoverable => ("unrecoverable", None, None),
        LockState::Unknown => ("unknown", None, None),
    };
    json!({ "state": state, "pid": pid, "tid": tid })
}

pub fn process(p: &ProcessInfo) -> Json {
    json!({ "pid": p.pid, "liveness": p.liveness.as_str(), "pins": p.pins })
}

pub fn holder(h: &Holder) -> Json {
    json!({ "pid": h.pid, "liveness": h.liveness.as_str(), "pins": h.pins })
}

pub fn summary(s: &StoreSummary) -> Json {
    json!({
        "capacity": s.capacity,
        "committed": s.committed,
        "used": s.used,
        "objects": s.objects,
        "recoveries": s.recoveries,
        "store_id": hex(s.store_id),
        "creator": s.creator,
        "remove_when_unused": s.remove_when_unused,
        "removed": s.removed,
        "processes": s.processes.iter().map(process).collect::<Vec<_>>(),
        "live_processes": s.live_processes().count(),
        "dead_processes": s.dead_processes().count(),
        "header_lock": lock(&s.header_lock),
        "journal_entries": s.journal_entries,
        "consistent": s.consistent,
        "problems": s.problems,
    })
}

pub fn kind_name(k: &SegmentKind) -> &'static str {
    match k {
        SegmentKind::Ready(_) => "store",
        SegmentKind::Creating { .. } => "creating",
        SegmentKind::Incompatible { .. } => "incompatible",
        SegmentKind::Foreign { .. } => "foreign",
        SegmentKind::Unreadable { .. } => "unreadable",
        _ => "unknown",
    }
}

pub fn segment(s: &SegmentInfo, owner_name: Option<String>) -> Json {
    let creator = match &s.kind {
        SegmentKind::Creating {
            creator,
            creator_liveness,
        } => json!({ "pid": creator, "liveness": creator_liveness.as_str() }),
        _ => Json::Null,
    };
    json!({
        "name": s.name,
        "path": format!("/dev/shm/{}", s.name.trim_start_matches('/')),
        "kind": kind_name(&s.kind),
        "status": s.status.as_str(),
        "reason": s.reason,
        "owner": s.owner,
        "owner_name": owner_name,
        "mode": format!("{:04o}", s.mode),
        "size": s.size,
        "allocated": s.allocated,
        "users": s.users(),
        "mapped_by": s.mapped_by,
        "mappers_complete": s.mappers_complete,
        "store": s.store().map(summary),
        "creating": creator,
    })
}

pub fn layout(d: &LayoutDesc) -> Json {
    let mut m = Map::new();
    m.insert("name".into(), json!(d.name));
    m.insert("type".into(), json!(d.type_expr()));
    m.insert("size".into(), json!(d.size));
    m.insert("align".into(), json!(d.align));
    match &d.kind {
        LayoutDescKind::Primitive => {
            m.insert("kind".into(), json!("primitive"));
        }
        LayoutDescKind::Struct {
            transparent,
            fields,
        } => {
            m.insert("kind".into(), json!("struct"));
            m.insert("transparent".into(), json!(transparent));
            let fields: Vec<Json> = fields
                .iter()
                .map(|f| json!({ "name": f.name, "offset": f.offset, "layout": layout(&f.ty) }))
                .collect();
            m.insert("fields".into(), json!(fields));
        }
        LayoutDescKind::Enum { repr, variants } => {
            m.insert("kind".into(), json!("enum"));
            m.insert("repr".into(), layout(repr));
            let variants: Vec<Json> = variants
                .iter()
                .map(|v| json!({ "name": v.name, "discriminant": int(v.discriminant) }))
                .collect();
            m.insert("variants".into(), json!(variants));
        }
        LayoutDescKind::Array { elem, len } => {
            m.insert("kind".into(), json!("array"));
            m.insert("len".into(), json!(len));
            m.insert("elem".into(), layout(elem));
        }
        LayoutDescKind::Opaque { params } => {
            m.insert("kind".into(), json!("opaque"));
            m.insert(
                "params".into(),
                json!(params.iter().map(layout).collect::<Vec<_>>()),
            );
        }
        LayoutDescKind::Container { params } => {
            m.insert("kind".into(), json!("container"));
            m.insert(
                "params".into(),
                json!(params.iter().map(layout).collect::<Vec<_>>()),
            );
        }
        LayoutDescKind::BackRef { depth } => {
            m.insert("kind".into(), json!("backref"));
            m.insert("depth".into(), json!(depth));
        }
        _ => {
            m.insert("kind".into(), json!("unknown"));
        }
    }
    Json::Object(m)
}

pub fn object(o: &ObjectInfo) -> Json {
    json!({
        "name": o.entry.name,
        "type": o.entry.type_name,
        "size": o.entry.size,
        "len": o.entry.len,
        "fingerprint": hex(o.entry.fingerprint),
        "pins": o.pins,
        "holders": o.holders.iter().map(holder).collect::<Vec<_>>(),
        "layout": layout(&o.entry.layout),
    })
}

/// An integer: a JSON number when it fits in 64 bits, else a string.
fn int(i: i128) -> Json {
    if let Ok(i) = i64::try_from(i) {
        json!(i)
    } else {
        json!(i.to_string())
    }
}

fn uint(u: u128) -> Json {
    if let Ok(u) = u64::try_from(u) {
        json!(u)
    } else {
        json!(u.to_string())
    }
}

/// A float: a JSON number, or `"NaN"`, `"inf"`, `"-inf"` (which JSON
/// cannot spell). An `f32` is written in its shortest decimal form.
fn float(shortest: String, finite: bool) -> Json {
    if finite {
        serde_json::from_str(&shortest).unwrap_or(json!(shortest))
    } else {
        json!(shortest)
    }
}

/// A value, as its natural JSON: numbers, booleans, strings; a struct
/// is an object of its fields; a list an array (or, when cut at the
/// limit, `{"len": N, "items": [...]}`); a map an array of `[key, value]`
/// pairs (or `{"len": N, "entries": [...]}` when cut); an enum its
/// variant's name; a `RelPtr` its target or `null`; a `ShmMutex`
/// `{"lock": ..., "owner_died": ..., "data": ...}`; unreadable parts
/// `{"invalid": "why"}`; elided ones `{"elided": true}`; bytes without a
/// layout `{"bytes": "hex"}`.
pub fn value(v: &Value) -> Json {
    match v {
        Value::Unit => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Char(c) => json!(c.to_string()),
        Value::UInt(u) => uint(*u),
        Value::Int(i) => int(*i),
        Value::F32(x) => float(format!("{x:?}"), x.is_finite()),
        Value::F64(x) => float(format!("{x:?}"), x.is_finite()),
        Value::Str(s) => json!(s),
        Value::Enum { variant, .. } => json!(variant),
        Value::Struct { fields, .. } => {
            let mut m = Map::new();
            for (name, v) in fields {
                m.insert(name.clone(), value(v));
            }
            Json::Object(m)
        }
        Value::List { len, items } => {
            let items: Vec<Json> = items.iter().map(value).collect();
            if items.len() as u64 == *len {
                json!(items)
            } else {
                json!({ "len": len, "items": items })
            }
        }
        Value::Map { len, entries } => {
            let entries: Vec<Json> = entries
                .iter()
                .map(|(k, v)| json!([value(k), value(v)]))
                .collect();
            if entries.len() as u64 == *len {
                json!(entries)
            } else {
                json!({ "len": len, "entries": entries })
            }
        }
        Value::Ptr(None) => Json::Null,
        Value::Ptr(Some(v)) => value(v),
        Value::Mutex {
            lock: l,
            owner_died,
            data,
        } => json!({ "lock": lock(l), "owner_died": owner_died, "data": value(data) }),
        Value::Bytes(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            json!({ "bytes": hex })
        }
        Value::Elided => json!({ "elided": true }),
        Value::Invalid(why) => json!({ "invalid": why }),
        _ => json!({ "invalid": "a kind of value this build cannot show" }),
    }
}

pub fn check_report(r: &CheckReport) -> Json {
    json!({
        "ok": r.is_ok(),
        "objects": r.objects,
        "types": r.types,
        "processes": r.processes,
        "used_blocks": r.used_blocks,
        "used_bytes": r.used_bytes,
        "free_blocks": r.free_blocks,
        "free_bytes": r.free_bytes,
        "nested_blocks": r.nested_blocks,
        "unreachable_blocks": r.unreachable_blocks,
        "unreachable_bytes": r.unreachable_bytes,
        "unaccounted_blocks": r.unaccounted_blocks,
        "untraced": r.untraced,
        "problems": r.problems,
    })
}

pub fn view(look: &Inspection) -> Json {
    json!({
        "consistent": look.is_consistent(),
        "copied_bytes": look.copied_bytes(),
        "rolled_back": match look.rolled_back() {
            None => Json::Null,
            Some(Ok(n)) => json!({ "entries": n }),
            Some(Err(e)) => json!({ "error": e }),
        },
    })
}
