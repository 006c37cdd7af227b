//! The derived schema (`derive_schema.py` → `.deps/fake-google-provider/schema.json`): loads it,
//! encodes it as `tfplugin6.Schema` messages, and walks values alongside it to plan (computed
//! values unknown) and to answer data sources (computed values deterministic).

use crate::msgpack::Value;
use crate::proto::Msg;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Limits: the 8.7.0 schema has 1375 resources and 471 data sources; nesting is cut at 10 by
/// the deriver. Anything beyond these is a broken schema file.
const MAX_TYPES: usize = 10_000;
const MAX_NESTING: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Required,
    /// Optional and computed: the wheel cannot tell the two apart (see the deriver).
    Optional,
    Computed,
}

#[derive(Debug)]
pub struct Attribute {
    pub name: String,
    /// Terraform's JSON type encoding, kept as JSON: sent as-is in `Attribute.type`.
    pub ty: Json,
    pub mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    /// One struct (`MaxItems: 1` in the SDK): served as LIST with max_items 1, as the SDK does.
    Single,
    List,
}

#[derive(Debug)]
pub struct NestedBlock {
    pub name: String,
    pub nesting: Nesting,
    pub min_items: i64,
    pub max_items: i64,
    pub block: Block,
}

#[derive(Debug, Default)]
pub struct Block {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
}

#[derive(Debug)]
pub struct Schema {
    pub provider_version: String,
    pub provider: Block,
    pub resources: BTreeMap<String, Block>,
    pub data_sources: BTreeMap<String, Block>,
}

fn block(j: &Json, depth: usize) -> Result<Block, String> {
    if depth > MAX_NESTING {
        return Err(format!("blocks nested deeper than {MAX_NESTING}"));
    }
    let mut out = Block::default();
    for a in j["attributes"].as_array().ok_or("block without attributes")? {
        let name = a[0].as_str().ok_or("attribute without a name")?.to_string();
        let mode = match a[2].as_str() {
            Some("required") => Mode::Required,
            Some("optional") => Mode::Optional,
            Some("computed") => Mode::Computed,
            other => return Err(format!("attribute {name}: unknown mode {other:?}")),
        };
        out.attributes.push(Attribute { name, ty: a[1].clone(), mode });
    }
    for b in j["blocks"].as_array().ok_or("block without blocks")? {
        let name = b[0].as_str().ok_or("block without a name")?.to_string();
        let nesting = match b[1].as_str() {
            Some("single") => Nesting::Single,
            Some("list") => Nesting::List,
            other => return Err(format!("block {name}: unknown nesting {other:?}")),
        };
        let min_items = b[2].as_i64().ok_or("min_items")?;
        let max_items = b[3].as_i64().ok_or("max_items")?;
        out.blocks.push(NestedBlock { name, nesting, min_items, max_items, block: block(&b[4], depth + 1)? });
    }
    Ok(out)
}

fn blocks(j: &Json, what: &str) -> Result<BTreeMap<String, Block>, String> {
    let map = j.as_object().ok_or(format!("{what}: not an object"))?;
    if map.is_empty() || map.len() > MAX_TYPES {
        return Err(format!("{what}: {} types (expected 1..{MAX_TYPES})", map.len()));
    }
    map.iter().map(|(k, v)| Ok((k.clone(), block(v, 0).map_err(|e| format!("{what} {k}: {e}"))?))).collect()
}

impl Schema {
    pub fn parse(text: &str) -> Result<Schema, String> {
        let j: Json = serde_json::from_str(text).map_err(|e| format!("schema is not JSON: {e}"))?;
        Ok(Schema {
            provider_version: j["provider_version"].as_str().ok_or("no provider_version")?.to_string(),
            provider: block(&j["provider"], 0)?,
            resources: blocks(&j["resources"], "resources")?,
            data_sources: blocks(&j["data_sources"], "data_sources")?,
        })
    }
}

// ------------------------------------------------------------------ protobuf encoding
fn encode_block(b: &Block) -> Msg {
    let mut m = Msg::default();
    for a in &b.attributes {
        let mut am = Msg::default();
        am.string(1, &a.name)
            .bytes(2, a.ty.to_string().as_bytes())
            .boolean(4, a.mode == Mode::Required)
            .boolean(5, a.mode == Mode::Optional)
            .boolean(6, a.mode != Mode::Required);
        m.message(2, &am);
    }
    for nb in &b.blocks {
        let mut nm = Msg::default();
        // NestingMode LIST = 2 for both: SDK providers serve single structs as lists of one.
        nm.string(1, &nb.name)
            .message(2, &encode_block(&nb.block))
            .int64(3, 2)
            .int64(4, nb.min_items)
            .int64(5, nb.max_items);
        debug_assert!(nb.nesting != Nesting::Single || nb.max_items == 1);
        m.message(3, &nm);
    }
    m
}

fn encode_schema(b: &Block) -> Msg {
    let mut m = Msg::default();
    m.message(2, &encode_block(b));
    m
}

/// `GetProviderSchema.Response`: provider, resource and data source schemas.
pub fn provider_schema_response(s: &Schema) -> Vec<u8> {
    let mut m = Msg::default();
    m.message(1, &encode_schema(&s.provider));
    // ServerCapabilities.get_provider_schema_optional: Terraform may reuse the schema it read
    // from one instance for the next instances of a run (decoding it is most of a start).
    let mut capabilities = Msg::default();
    capabilities.boolean(2, true);
    m.message(6, &capabilities);
    for (field, map) in [(2, &s.resources), (3, &s.data_sources)] {
        for (name, b) in map {
            let mut entry = Msg::default();
            entry.string(1, name).message(2, &encode_schema(b));
            m.message(field, &entry);
        }
    }
    m.0
}

// ------------------------------------------------------------------ planning and reading
/// Walks every object of `v` that `b` describes and calls `f` on each attribute's value.
fn walk(b: &Block, v: &mut Value, f: &mut dyn FnMut(&Attribute, &mut Value)) {
    if !matches!(v, Value::Map(_)) {
        return; // null or unknown object: nothing inside to fill.
    }
    for a in &b.attributes {
        if let Some(av) = v.attr_mut(&a.name) {
            f(a, av);
        }
    }
    for nb in &b.blocks {
        match v.attr_mut(&nb.name) {
            Some(Value::Array(items)) => items.iter_mut().for_each(|item| walk(&nb.block, item, f)),
            Some(single @ Value::Map(_)) => walk(&nb.block, single, f),
            _ => {}
        }
    }
}

/// The planned state of a create or update: the proposed new state with every computed
/// attribute the configuration leaves null marked unknown ("known after apply"), as the real
/// provider leaves them until the API answers.
pub fn plan(b: &Block, proposed: &mut Value) {
    walk(b, proposed, &mut |a, av| {
        if a.mode != Mode::Required && *av == Value::Nil {
            *av = Value::unknown();
        }
    });
}

/// A deterministic value of type `ty` for computed attribute `name`: the same on every run, so
/// plans are reproducible; strings say they are fake.
pub fn fake_value(name: &str, ty: &Json) -> Value {
    match ty {
        Json::String(p) if p == "string" => Value::Str(format!("fake-{name}")),
        Json::String(p) if p == "number" => Value::Int(0),
        Json::String(p) if p == "bool" => Value::Bool(false),
        Json::Array(parts) if parts.first().and_then(Json::as_str) == Some("object") => match parts.get(1) {
            Some(Json::Object(fields)) => {
                Value::Map(fields.iter().map(|(k, t)| (Value::Str(k.clone()), fake_value(k, t))).collect())
            }
            _ => Value::Nil,
        },
        Json::Array(parts) if parts.first().and_then(Json::as_str) == Some("map") => Value::Map(Vec::new()),
        Json::Array(_) => Value::Array(Vec::new()), // list, set: empty
        _ => Value::Nil,                            // dynamic: null
    }
}

/// A data source's state: the configuration with every null computed attribute filled in.
pub fn read_data_source(b: &Block, config: &mut Value) {
    walk(b, config, &mut |a, av| {
        if a.mode != Mode::Required && *av == Value::Nil {
            *av = fake_value(&a.name, &a.ty);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::Value as V;

    const SCHEMA: &str = r#"{"provider_version":"8.7.0","provider":{"attributes":[["project","string","optional"]],"blocks":[]},
      "resources":{"google_redis_instance":{"attributes":[["auth_string","string","computed"],["name","string","required"],["region","string","optional"]],
        "blocks":[["maintenance_policy","single",0,1,{"attributes":[["create_time","string","computed"],["description","string","optional"]],"blocks":[]}]]}},
      "data_sources":{"google_project":{"attributes":[["number","string","computed"],["labels",["map","string"],"computed"],["project_id","string","optional"]],"blocks":[]}}}"#;

    fn obj(entries: Vec<(&str, V)>) -> V {
        V::Map(entries.into_iter().map(|(k, v)| (V::Str(k.into()), v)).collect())
    }

    #[test]
    fn plan_marks_unset_computed_values_unknown_and_keeps_configured_ones() {
        let s = Schema::parse(SCHEMA).unwrap();
        let b = &s.resources["google_redis_instance"];
        let mut v = obj(vec![
            ("auth_string", V::Nil),
            ("name", V::Str("cache".into())),
            ("region", V::Str("europe-west1".into())),
            ("maintenance_policy", V::Array(vec![obj(vec![("create_time", V::Nil), ("description", V::Nil)])])),
        ]);
        plan(b, &mut v);
        assert!(v.attr_mut("auth_string").unwrap().is_unknown());
        assert_eq!(v.attr_mut("name").unwrap(), &V::Str("cache".into()));
        assert_eq!(v.attr_mut("region").unwrap(), &V::Str("europe-west1".into()));
        let V::Array(items) = v.attr_mut("maintenance_policy").unwrap() else { panic!("list expected") };
        assert!(items[0].attr_mut("create_time").unwrap().is_unknown());
    }

    #[test]
    fn data_sources_answer_deterministic_values_of_the_right_type() {
        let s = Schema::parse(SCHEMA).unwrap();
        let b = &s.data_sources["google_project"];
        let mut v = obj(vec![("number", V::Nil), ("labels", V::Nil), ("project_id", V::Str("p".into()))]);
        read_data_source(b, &mut v);
        assert_eq!(v.attr_mut("number").unwrap(), &V::Str("fake-number".into()));
        assert_eq!(v.attr_mut("labels").unwrap(), &V::Map(vec![]));
        assert_eq!(v.attr_mut("project_id").unwrap(), &V::Str("p".into()));
    }

    #[test]
    fn schema_encodes_required_optional_and_computed_flags() {
        let s = Schema::parse(SCHEMA).unwrap();
        let bytes = provider_schema_response(&s);
        let text = String::from_utf8_lossy(&bytes);
        for name in ["google_redis_instance", "google_project", "auth_string", "maintenance_policy", "\"string\""] {
            assert!(text.contains(name), "{name} missing from the encoded schema");
        }
    }

    #[test]
    fn broken_schema_files_are_refused_with_the_reason() {
        assert!(Schema::parse("{").unwrap_err().contains("not JSON"));
        let bad_mode = SCHEMA.replace(r#""required""#, r#""sometimes""#);
        assert!(Schema::parse(&bad_mode).unwrap_err().contains("unknown mode"));
        let no_resources =
            SCHEMA.replace("google_redis_instance", "x").replace(r#""resources":{"x""#, r#""resources":{},"y""#);
        assert!(Schema::parse(&no_resources).is_err());
    }
}
