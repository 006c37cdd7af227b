//! Static evaluation of a Terraform/OpenTofu root: variables (defaults, tfvars, overrides),
//! locals, module instances (local sources), `count`/`for_each`, `dynamic` blocks, common
//! functions, and references between resources. Whatever needs a plan stays `Value::Unknown`
//! with a symbolic rendering. Evaluation is lazy and memoised; cycles and runaway recursion
//! become unknowns (never a stack overflow): every recursion has a limit.

mod functions;

pub use functions::call_function;

use crate::source::{self, Diagnostic, Loc, Mode, ModuleSrc};
use crate::value::{format_number, is_symbolic, symbolic_fragment, Value};
use hcl::expr::{
    BinaryOperator, Conditional, Expression, ForExpr, FuncCall, Object, ObjectKey, Operation, TraversalOperator,
    UnaryOperator,
};
use hcl::template::{Directive, Element, Template};
use hcl::{Block, Body};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Limits (TigerBeetle style: everything bounded).
pub const MAX_EVAL_DEPTH: u32 = 200;
pub const MAX_MODULE_DEPTH: u32 = 16;
pub const MAX_INSTANCES_PER_RESOURCE: usize = 100_000;
pub const MAX_COLLECTION_ITEMS: usize = 1_000_000;
pub const MAX_MODULE_INSTANCES: usize = 10_000;

/// Key of an attribute map that remembers the resource address (so a missing attribute becomes
/// the symbolic `addr.attr`). Never shown: `Value::to_json` output is built from extracted facts.
pub const ADDR_KEY: &str = "\u{0}addr";

/// One evaluated resource instance.
#[derive(Debug, Clone)]
pub struct ResInstance {
    pub address: String,
    pub mode: Mode,
    pub rtype: String,
    pub attrs: Value,
    pub loc: Loc,
    /// Module instance path ("" for the root).
    pub module_path: String,
}

type ResKey = (Mode, String, String);
/// Instances of one module call: (for_each/count key, instance).
type Children = Vec<(Option<Value>, Rc<Instance>)>;

pub struct Instance {
    pub src: Rc<ModuleSrc>,
    pub path: String,
    pub depth: u32,
    vars: BTreeMap<String, Value>,
    inherited_project: Value,
    locals: RefCell<HashMap<String, Value>>,
    busy: RefCell<HashSet<String>>,
    outputs: RefCell<HashMap<String, Value>>,
    children: RefCell<HashMap<String, Children>>,
    resources: RefCell<HashMap<ResKey, (Value, Vec<ResInstance>)>>,
    project: RefCell<Option<Value>>,
}

/// The loaded module sources and the instances built from them.
pub struct World {
    sources: RefCell<HashMap<PathBuf, Rc<ModuleSrc>>>,
    pub diagnostics: RefCell<Vec<Diagnostic>>,
    /// Input problems the analysis goes on past (exit code unchanged).
    pub warnings: RefCell<Vec<Diagnostic>>,
    pub notes: RefCell<Vec<String>>,
    depth: Cell<u32>,
    instance_count: Cell<usize>,
}

type Frame = Vec<(String, Value)>;

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> World {
        World {
            sources: RefCell::new(HashMap::new()),
            diagnostics: RefCell::new(Vec::new()),
            warnings: RefCell::new(Vec::new()),
            notes: RefCell::new(Vec::new()),
            depth: Cell::new(0),
            instance_count: Cell::new(0),
        }
    }

    pub fn load(&self, dir: &Path) -> Rc<ModuleSrc> {
        let key = source::normalize(dir);
        if let Some(src) = self.sources.borrow().get(&key) {
            return src.clone();
        }
        let src = Rc::new(source::load_module(&key));
        self.diagnostics.borrow_mut().extend(src.diagnostics.iter().cloned());
        self.sources.borrow_mut().insert(key, src.clone());
        src
    }

    pub fn sources(&self) -> Vec<Rc<ModuleSrc>> {
        let mut all: Vec<_> = self.sources.borrow().values().cloned().collect();
        all.sort_by(|a, b| a.dir.cmp(&b.dir));
        all
    }

    fn note(&self, text: String) {
        let mut notes = self.notes.borrow_mut();
        if notes.len() < 1000 && !notes.contains(&text) {
            notes.push(text);
        }
    }

    /// Builds the root instance with variable values: defaults < tfvars files < overrides.
    pub fn root(&self, dir: &Path, var_files: &[PathBuf], overrides: &[(String, String)]) -> Rc<Instance> {
        let src = self.load(dir);
        let mut given: BTreeMap<String, Value> = BTreeMap::new();
        let mut files: Vec<PathBuf> = Vec::new();
        let auto = src.dir.join("terraform.tfvars");
        if auto.is_file() {
            files.push(auto);
        }
        if let Ok(entries) = std::fs::read_dir(&src.dir) {
            let mut autos: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".auto.tfvars"))
                .collect();
            autos.sort();
            files.extend(autos);
        }
        files.extend(var_files.iter().cloned());
        for file in files {
            self.read_tfvars(&file, &mut given);
        }
        for (k, v) in overrides {
            // `--var k=v`: a JSON-ish literal if it parses as HCL, else the raw string.
            let value = match hcl::parse(&format!("v = {v}")) {
                Ok(body) => match attr_expr(&body, "v") {
                    Some(e) => const_eval(self, e),
                    None => Value::String(v.clone()),
                },
                Err(_) => Value::String(v.clone()),
            };
            given.insert(k.clone(), value);
        }
        self.instantiate(src, String::new(), 0, given, Value::unknown("provider.google.project"))
    }

    fn read_tfvars(&self, file: &Path, out: &mut BTreeMap<String, Value>) {
        let name = file.display().to_string();
        // A dangling `*.auto.tfvars` symlink (terraform-example-foundation links them at
        // setup): the variables take their defaults and the analysis goes on.
        if file.is_symlink() && !file.exists() {
            let target = std::fs::read_link(file).map(|t| t.display().to_string()).unwrap_or_default();
            self.warnings.borrow_mut().push(Diagnostic {
                loc: Loc { file: name, line: 0 },
                message: format!("variables file is a dangling symlink (to {target}); skipped, defaults apply"),
            });
            return;
        }
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                self.diagnostics.borrow_mut().push(Diagnostic {
                    loc: Loc { file: name, line: 0 },
                    message: format!("cannot read variables file: {e}"),
                });
                return;
            }
        };
        if name.ends_with(".json") {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(o)) => {
                    for (k, v) in o {
                        out.insert(k, Value::from_json(&v));
                    }
                }
                _ => self.diagnostics.borrow_mut().push(Diagnostic {
                    loc: Loc { file: name, line: 0 },
                    message: "variables file is not a JSON object".into(),
                }),
            }
            return;
        }
        match source::parse_hcl(&text) {
            Ok(body) => {
                let body: Body = body.into();
                for a in body.attributes() {
                    out.insert(a.key.as_str().to_string(), const_eval(self, &a.expr));
                }
            }
            Err(e) => self.diagnostics.borrow_mut().push(Diagnostic {
                loc: Loc { file: name, line: u32::try_from(e.location().line()).unwrap_or(0) },
                message: format!("HCL parse error in variables file: {}", e.message()),
            }),
        }
    }

    fn instantiate(
        &self,
        src: Rc<ModuleSrc>,
        path: String,
        depth: u32,
        given: BTreeMap<String, Value>,
        inherited_project: Value,
    ) -> Rc<Instance> {
        self.instance_count.set(self.instance_count.get() + 1);
        let mut vars = BTreeMap::new();
        for var in &src.variables {
            let value = match given.get(&var.name) {
                Some(v) if *v != Value::Null => v.clone(),
                _ => match &var.default {
                    Some(d) => const_eval(self, d),
                    None => Value::unknown(format!("var.{}", var.name)),
                },
            };
            vars.insert(var.name.clone(), value);
        }
        Rc::new(Instance {
            src,
            path,
            depth,
            vars,
            inherited_project,
            locals: RefCell::new(HashMap::new()),
            busy: RefCell::new(HashSet::new()),
            outputs: RefCell::new(HashMap::new()),
            children: RefCell::new(HashMap::new()),
            resources: RefCell::new(HashMap::new()),
            project: RefCell::new(None),
        })
    }

    /// Evaluates every resource of every module instance reachable from `root`.
    pub fn all_resources(&self, root: &Rc<Instance>) -> Vec<ResInstance> {
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        let mut seen = 0usize;
        while let Some(inst) = stack.pop() {
            seen += 1;
            if seen > MAX_MODULE_INSTANCES {
                self.note(format!("more than {MAX_MODULE_INSTANCES} module instances: rest not analyzed"));
                break;
            }
            let ev = Ev { world: self, inst: &inst };
            for decl in &inst.src.resources {
                let (_, instances) = ev.resource(decl.mode, &decl.rtype, &decl.name);
                out.extend(instances);
            }
            for call in &inst.src.modules {
                let children = ev.children(&call.name);
                for (_, child) in children.into_iter().rev() {
                    stack.push(child);
                }
            }
        }
        out
    }
}

fn attr_expr<'a>(body: &'a Body, name: &str) -> Option<&'a Expression> {
    source::attr(body, name)
}

/// Evaluates an expression that may only use literals and functions (variable defaults,
/// tfvars): there is no scope to refer to.
fn const_eval(world: &World, expr: &Expression) -> Value {
    let empty = Rc::new(ModuleSrc::default());
    let inst = world.instantiate(empty, String::new(), 0, BTreeMap::new(), Value::Null);
    let ev = Ev { world, inst: &inst };
    ev.eval(expr, &Vec::new())
}

pub struct Ev<'a> {
    pub world: &'a World,
    pub inst: &'a Rc<Instance>,
}

struct DepthGuard<'a>(&'a Cell<u32>);
impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Ev<'_> {
    fn enter(&self) -> Option<DepthGuard<'_>> {
        let d = self.world.depth.get();
        if d >= MAX_EVAL_DEPTH {
            return None;
        }
        self.world.depth.set(d + 1);
        Some(DepthGuard(&self.world.depth))
    }

    fn busy(&self, key: &str) -> bool {
        self.inst.busy.borrow().contains(key)
    }

    fn with_busy<T>(&self, key: &str, f: impl FnOnce() -> T) -> T {
        self.inst.busy.borrow_mut().insert(key.to_string());
        let out = f();
        self.inst.busy.borrow_mut().remove(key);
        out
    }

    fn prefix(&self) -> String {
        if self.inst.path.is_empty() {
            String::new()
        } else {
            format!("{}.", self.inst.path)
        }
    }

    /// The provider's default project for this module instance.
    pub fn default_project(&self) -> Value {
        if let Some(p) = self.inst.project.borrow().as_ref() {
            return p.clone();
        }
        let own = self
            .inst
            .src
            .providers
            .iter()
            .find(|p| p.name == "google" || p.name == "google-beta")
            .and_then(|p| attr_expr(&p.body, "project").map(|e| self.eval(e, &Vec::new())));
        let value = own.unwrap_or_else(|| self.inst.inherited_project.clone());
        *self.inst.project.borrow_mut() = Some(value.clone());
        value
    }

    pub fn local(&self, name: &str) -> Value {
        if let Some(v) = self.inst.locals.borrow().get(name) {
            return v.clone();
        }
        let key = format!("local.{name}");
        if self.busy(&key) {
            return Value::unknown(format!("{key} (cycle)"));
        }
        let Some((_, expr, _)) = self.inst.src.local(name) else {
            return Value::unknown(key);
        };
        let value = self.with_busy(&key, || self.eval(expr, &Vec::new()));
        self.inst.locals.borrow_mut().insert(name.to_string(), value.clone());
        value
    }

    /// The instances of a module call (evaluated once).
    pub fn children(&self, name: &str) -> Vec<(Option<Value>, Rc<Instance>)> {
        if let Some(c) = self.inst.children.borrow().get(name) {
            return c.clone();
        }
        let key = format!("module.{name}");
        if self.busy(&key) {
            return Vec::new();
        }
        let built = self.with_busy(&key, || self.build_children(name));
        self.inst.children.borrow_mut().insert(name.to_string(), built.clone());
        built
    }

    fn build_children(&self, name: &str) -> Vec<(Option<Value>, Rc<Instance>)> {
        let Some(call) = self.inst.src.module(name) else {
            return Vec::new();
        };
        let Some(source) = call.source.as_deref() else {
            self.world.note(format!("{}: module {name} has no literal source", call.loc));
            return Vec::new();
        };
        if !(source.starts_with("./") || source.starts_with("../")) {
            self.world.note(format!(
                "{}: module {name} source {source:?} is not local: its resources are not analyzed (outputs symbolic)",
                call.loc
            ));
            return Vec::new();
        }
        if self.inst.depth + 1 > MAX_MODULE_DEPTH {
            self.world.note(format!("{}: module nesting deeper than {MAX_MODULE_DEPTH}", call.loc));
            return Vec::new();
        }
        let dir = self.inst.src.dir.join(source);
        if !dir.is_dir() {
            self.world.diagnostics.borrow_mut().push(Diagnostic {
                loc: call.loc.clone(),
                message: format!("module {name}: source folder {} not found", dir.display()),
            });
            return Vec::new();
        }
        let src = self.world.load(&dir);
        let keys = self.expansion(&call.body, &format!("module.{name}"), &call.loc);
        let mut out = Vec::new();
        for (key, frame) in keys {
            let mut given = BTreeMap::new();
            for a in call.body.attributes() {
                let k = a.key.as_str();
                if matches!(k, "source" | "version" | "count" | "for_each" | "providers" | "depends_on") {
                    continue;
                }
                given.insert(k.to_string(), self.eval(&a.expr, &frame));
            }
            let path = format!("{}module.{name}{}", self.prefix(), key_suffix(key.as_ref()));
            let child = self.world.instantiate(src.clone(), path, self.inst.depth + 1, given, self.default_project());
            out.push((key, child));
        }
        out
    }

    /// `count` / `for_each` of a block: one frame per instance (key, frame).
    fn expansion(&self, body: &Body, what: &str, loc: &Loc) -> Vec<(Option<Value>, Frame)> {
        if let Some(expr) = attr_expr(body, "for_each") {
            return self.for_each_frames(expr, what, loc);
        }
        if let Some(expr) = attr_expr(body, "count") {
            return self.count_frames(expr, what, loc);
        }
        vec![(None, Vec::new())]
    }

    fn for_each_frames(&self, expr: &Expression, what: &str, loc: &Loc) -> Vec<(Option<Value>, Frame)> {
        let items: Vec<(Value, Value)> = match self.eval(expr, &Vec::new()) {
            Value::Map(m) => m.into_iter().filter(|(k, _)| k != ADDR_KEY).map(|(k, v)| (Value::String(k), v)).collect(),
            Value::List(l) => {
                l.into_iter().map(|v| (Value::String(v.to_symbolic_string().unwrap_or_default()), v)).collect()
            }
            Value::Null => Vec::new(),
            other => {
                self.note_symbolic_expansion(loc, "for_each", what, &other);
                vec![(Value::unknown("each.key"), Value::unknown("each.value"))]
            }
        };
        items
            .into_iter()
            .take(MAX_INSTANCES_PER_RESOURCE)
            .map(|(k, v)| (Some(k.clone()), vec![("each.key".into(), k), ("each.value".into(), v)]))
            .collect()
    }

    fn count_frames(&self, expr: &Expression, what: &str, loc: &Loc) -> Vec<(Option<Value>, Frame)> {
        match self.eval(expr, &Vec::new()) {
            Value::Number(n) if n >= 0.0 => {
                let n = (n as usize).min(MAX_INSTANCES_PER_RESOURCE);
                (0..n)
                    .map(|i| {
                        let idx = Value::Number(i as f64);
                        (Some(idx.clone()), vec![("count.index".into(), idx)])
                    })
                    .collect()
            }
            Value::Bool(b) => {
                if b {
                    vec![(Some(Value::Number(0.0)), vec![("count.index".into(), Value::Number(0.0))])]
                } else {
                    Vec::new()
                }
            }
            other => {
                self.note_symbolic_expansion(loc, "count", what, &other);
                vec![(Some(Value::unknown("count.index")), vec![("count.index".into(), Value::unknown("count.index"))])]
            }
        }
    }

    /// `meta` (`count` or `for_each`) of `what` is not a usable value before a plan.
    fn note_symbolic_expansion(&self, loc: &Loc, meta: &str, what: &str, value: &Value) {
        let text = match value {
            Value::Unknown(u) => u.clone(),
            v => v.type_name().to_string(),
        };
        self.world
            .note(format!("{loc}: {meta} of {what} is unknown until plan ({text}): analyzed as one symbolic instance"));
    }

    fn module_output(&self, child: &Rc<Instance>, name: &str) -> Value {
        if let Some(v) = child.outputs.borrow().get(name) {
            return v.clone();
        }
        let ev = Ev { world: self.world, inst: child };
        let key = format!("output.{name}");
        if ev.busy(&key) {
            return Value::unknown(format!("{}.{name} (cycle)", child.path));
        }
        let value = match child.src.output(name).and_then(|o| o.value.as_ref()) {
            Some(expr) => ev.with_busy(&key, || ev.eval(expr, &Vec::new())),
            None => Value::unknown(format!("{}.{name}", child.path)),
        };
        child.outputs.borrow_mut().insert(name.to_string(), value.clone());
        value
    }

    fn module_value(&self, name: &str) -> Value {
        let Some(call) = self.inst.src.module(name) else {
            return Value::unknown(format!("module.{name}"));
        };
        let children = self.children(name);
        if children.is_empty() {
            return Value::unknown(format!("module.{name}"));
        }
        let outputs = |child: &Rc<Instance>| {
            let mut m = BTreeMap::new();
            for o in &child.src.outputs {
                m.insert(o.name.clone(), self.module_output(child, &o.name));
            }
            m.insert(ADDR_KEY.to_string(), Value::String(child.path.clone()));
            Value::Map(m)
        };
        if attr_expr(&call.body, "for_each").is_some() {
            let mut m = BTreeMap::new();
            for (k, child) in &children {
                let key = k.as_ref().and_then(|k| k.to_symbolic_string()).unwrap_or_default();
                m.insert(key, outputs(child));
            }
            Value::Map(m)
        } else if attr_expr(&call.body, "count").is_some() {
            Value::List(children.iter().map(|(_, c)| outputs(c)).collect())
        } else {
            outputs(&children[0].1)
        }
    }

    /// Evaluates all instances of a resource (once) → (reference value, instances).
    pub fn resource(&self, mode: Mode, rtype: &str, name: &str) -> (Value, Vec<ResInstance>) {
        let key: ResKey = (mode, rtype.to_string(), name.to_string());
        if let Some(r) = self.inst.resources.borrow().get(&key) {
            return r.clone();
        }
        let base = match mode {
            Mode::Managed => format!("{}{rtype}.{name}", self.prefix()),
            Mode::Data => format!("{}data.{rtype}.{name}", self.prefix()),
        };
        if self.busy(&base) {
            return (Value::unknown(format!("{base} (cycle)")), Vec::new());
        }
        let Some(decl) = self.inst.src.resource(mode, rtype, name) else {
            return (Value::unknown(base), Vec::new());
        };
        let result = self.with_busy(&base, || {
            let keys = self.expansion(&decl.body, &base, &decl.loc);
            let mut instances = Vec::new();
            for (k, frame) in keys {
                let address = format!("{base}{}", key_suffix(k.as_ref()));
                let mut attrs = match self.eval_body(&decl.body, &frame) {
                    Value::Map(m) => m,
                    _ => BTreeMap::new(),
                };
                attrs.insert(ADDR_KEY.to_string(), Value::String(address.clone()));
                computed_attributes(rtype, mode, &address, &mut attrs, &self.default_project());
                instances.push(ResInstance {
                    address,
                    mode,
                    rtype: rtype.to_string(),
                    attrs: Value::Map(attrs),
                    loc: decl.loc.clone(),
                    module_path: self.inst.path.clone(),
                });
            }
            let reference = if attr_expr(&decl.body, "for_each").is_some() {
                let mut m = BTreeMap::new();
                for inst in &instances {
                    let k = inst.address.rsplit_once("[\"").map(|(_, k)| k.trim_end_matches("\"]").to_string());
                    m.insert(k.unwrap_or_else(|| inst.address.clone()), inst.attrs.clone());
                }
                Value::Map(m)
            } else if attr_expr(&decl.body, "count").is_some() {
                Value::List(instances.iter().map(|i| i.attrs.clone()).collect())
            } else {
                instances.first().map(|i| i.attrs.clone()).unwrap_or(Value::Null)
            };
            (reference, instances)
        });
        self.inst.resources.borrow_mut().insert(key, result.clone());
        result
    }

    /// A block body as a map: attributes, nested blocks as lists of maps, `dynamic` expanded.
    pub fn eval_body(&self, body: &Body, frame: &Frame) -> Value {
        let mut m: BTreeMap<String, Value> = BTreeMap::new();
        for a in body.attributes() {
            let k = a.key.as_str();
            if matches!(k, "count" | "for_each" | "depends_on" | "provider") {
                continue;
            }
            m.insert(k.to_string(), self.eval(&a.expr, frame));
        }
        for b in body.blocks() {
            let ident = b.identifier.as_str();
            if matches!(ident, "lifecycle" | "provisioner" | "connection") {
                continue;
            }
            if ident == "dynamic" {
                self.eval_dynamic(b, frame, &mut m);
                continue;
            }
            let v = self.eval_body(&b.body, frame);
            push_block(&mut m, ident, v);
        }
        Value::Map(m)
    }

    fn eval_dynamic(&self, b: &Block, frame: &Frame, m: &mut BTreeMap<String, Value>) {
        let Some(name) = b.labels.first().map(|l| l.as_str().to_string()) else {
            return;
        };
        let iterator = attr_expr(&b.body, "iterator")
            .and_then(|e| match e {
                Expression::Variable(v) => Some(v.as_str().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| name.clone());
        let Some(content) = b.body.blocks().find(|c| c.identifier.as_str() == "content") else {
            return;
        };
        let coll = attr_expr(&b.body, "for_each").map(|e| self.eval(e, frame)).unwrap_or(Value::Null);
        // Not a collection yet: one symbolic block.
        let items = collection_items(coll).unwrap_or_else(|other| {
            let value = match other {
                Value::Unknown(u) => Value::Unknown(format!("{u}[*]")),
                v => v,
            };
            vec![(Value::unknown(format!("{iterator}.key")), value)]
        });
        for (k, v) in items.into_iter().take(MAX_COLLECTION_ITEMS) {
            let mut f = frame.clone();
            let mut it = BTreeMap::new();
            it.insert("key".to_string(), k);
            it.insert("value".to_string(), v);
            f.push((iterator.clone(), Value::Map(it)));
            let value = self.eval_body(&content.body, &f);
            push_block(m, &name, value);
        }
    }

    pub fn eval(&self, expr: &Expression, frame: &Frame) -> Value {
        let Some(_guard) = self.enter() else {
            return Value::unknown("(evaluation depth limit)");
        };
        match expr {
            Expression::Null => Value::Null,
            Expression::Bool(b) => Value::Bool(*b),
            Expression::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
            Expression::String(s) => Value::String(s.clone()),
            Expression::Array(items) => Value::List(items.iter().map(|e| self.eval(e, frame)).collect()),
            Expression::Object(obj) => self.eval_object(obj, frame),
            Expression::TemplateExpr(t) => match Template::from_expr(t) {
                Ok(tpl) => self.eval_template(&tpl, frame),
                Err(e) => Value::unknown(format!("(template error: {e})")),
            },
            Expression::Variable(v) => {
                let name = v.as_str();
                lookup(frame, name).unwrap_or_else(|| Value::unknown(name.to_string()))
            }
            Expression::Traversal(t) => self.eval_traversal(&t.expr, &t.operators, frame),
            Expression::FuncCall(f) => self.eval_call(f, frame),
            Expression::Parenthesis(e) => self.eval(e, frame),
            Expression::Conditional(c) => self.eval_conditional(c, frame),
            Expression::Operation(op) => self.eval_operation(op, frame),
            Expression::ForExpr(fe) => self.eval_for(fe, frame),
            _ => Value::unknown("(unsupported expression)"),
        }
    }

    /// An object; a key that is no string (nor symbolic string) leaves its entry out.
    fn eval_object(&self, obj: &Object<ObjectKey, Expression>, frame: &Frame) -> Value {
        let mut m = BTreeMap::new();
        for (k, v) in obj.iter() {
            let key = match k {
                ObjectKey::Identifier(i) => i.as_str().to_string(),
                ObjectKey::Expression(e) => match self.eval(e, frame) {
                    Value::String(s) => s,
                    other => match other.to_symbolic_string() {
                        Some(s) => s,
                        None => continue,
                    },
                },
                _ => continue,
            };
            m.insert(key, self.eval(v, frame));
        }
        Value::Map(m)
    }

    /// A call of a built-in; provider-defined functions (`provider::x::f`) stay symbolic.
    fn eval_call(&self, f: &FuncCall, frame: &Frame) -> Value {
        if !f.name.namespace.is_empty() {
            return Value::unknown(format!("{}()", f.name.name.as_str()));
        }
        let mut args: Vec<Value> = f.args.iter().map(|a| self.eval(a, frame)).collect();
        if f.expand_final {
            if let Some(Value::List(last)) = args.pop() {
                args.extend(last);
            }
        }
        call_function(f.name.name.as_str(), args, self.inst.src.dir.as_path())
    }

    /// An unknown condition still answers when both branches agree.
    fn eval_conditional(&self, c: &Conditional, frame: &Frame) -> Value {
        match self.eval(&c.cond_expr, frame).truthy() {
            Some(true) => self.eval(&c.true_expr, frame),
            Some(false) => self.eval(&c.false_expr, frame),
            None => {
                let t = self.eval(&c.true_expr, frame);
                let f = self.eval(&c.false_expr, frame);
                if t == f {
                    t
                } else {
                    Value::unknown("(condition unknown until plan)")
                }
            }
        }
    }

    /// `[for ...]` (a list) or `{for ... => ...}` (a map, grouped with `...`).
    fn eval_for(&self, fe: &ForExpr, frame: &Frame) -> Value {
        let items = match collection_items(self.eval(&fe.collection_expr, frame)) {
            Ok(items) => items,
            Err(Value::Unknown(u)) => return Value::unknown(format!("[for ... in {u}]")),
            Err(other) => return Value::unknown(format!("(for over a {})", other.type_name())),
        };
        let mut list = Vec::new();
        let mut map: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in items.into_iter().take(MAX_COLLECTION_ITEMS) {
            let mut f = frame.clone();
            if let Some(kv) = &fe.key_var {
                f.push((kv.as_str().to_string(), k));
            }
            f.push((fe.value_var.as_str().to_string(), v));
            if let Some(cond) = &fe.cond_expr {
                match self.eval(cond, &f).truthy() {
                    Some(true) => {}
                    Some(false) => continue,
                    None => return Value::unknown("(for filter unknown until plan)"),
                }
            }
            let value = self.eval(&fe.value_expr, &f);
            let Some(ke) = &fe.key_expr else {
                list.push(value);
                continue;
            };
            let key = self.eval(ke, &f).to_symbolic_string().unwrap_or_default();
            if !fe.grouping {
                map.insert(key, value);
            } else if let Value::List(l) = map.entry(key).or_insert_with(|| Value::List(Vec::new())) {
                l.push(value);
            }
        }
        if fe.key_expr.is_some() {
            Value::Map(map)
        } else {
            Value::List(list)
        }
    }

    fn eval_template(&self, tpl: &Template, frame: &Frame) -> Value {
        let mut out = String::new();
        let mut unknown = false;
        self.render(tpl, frame, &mut out, &mut unknown);
        if unknown {
            Value::Unknown(out)
        } else {
            Value::String(out)
        }
    }

    fn render(&self, tpl: &Template, frame: &Frame, out: &mut String, unknown: &mut bool) {
        for el in tpl.elements() {
            match el {
                Element::Literal(s) => out.push_str(s),
                Element::Interpolation(i) => match self.eval(&i.expr, frame) {
                    Value::Unknown(u) => {
                        *unknown = true;
                        out.push_str(&symbolic_fragment(&u));
                    }
                    v => match v.to_symbolic_string() {
                        Some(s) => out.push_str(&s),
                        None => {
                            *unknown = true;
                            out.push_str("${(not a string)}");
                        }
                    },
                },
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(ifd) => match self.eval(&ifd.cond_expr, frame).truthy() {
                        Some(true) => self.render(&ifd.true_template, frame, out, unknown),
                        Some(false) => {
                            if let Some(f) = &ifd.false_template {
                                self.render(f, frame, out, unknown);
                            }
                        }
                        None => {
                            *unknown = true;
                            out.push_str("${(if unknown)}");
                        }
                    },
                    Directive::For(fd) => match self.eval(&fd.collection_expr, frame) {
                        Value::List(l) => {
                            for (i, v) in l.into_iter().enumerate().take(MAX_COLLECTION_ITEMS) {
                                let mut f = frame.clone();
                                if let Some(kv) = &fd.key_var {
                                    f.push((kv.as_str().to_string(), Value::Number(i as f64)));
                                }
                                f.push((fd.value_var.as_str().to_string(), v));
                                self.render(&fd.template, &f, out, unknown);
                            }
                        }
                        Value::Map(m) => {
                            for (k, v) in m.into_iter().filter(|(k, _)| k != ADDR_KEY) {
                                let mut f = frame.clone();
                                if let Some(kv) = &fd.key_var {
                                    f.push((kv.as_str().to_string(), Value::String(k)));
                                }
                                f.push((fd.value_var.as_str().to_string(), v));
                                self.render(&fd.template, &f, out, unknown);
                            }
                        }
                        _ => {
                            *unknown = true;
                            out.push_str("${(for unknown)}");
                        }
                    },
                },
            }
        }
    }

    fn eval_operation(&self, op: &Operation, frame: &Frame) -> Value {
        match op {
            Operation::Unary(u) => {
                let v = self.eval(&u.expr, frame);
                match (u.operator, v) {
                    (UnaryOperator::Not, Value::Bool(b)) => Value::Bool(!b),
                    (UnaryOperator::Neg, Value::Number(n)) => Value::Number(-n),
                    (_, Value::Unknown(u)) => Value::unknown(format!("(op {u})")),
                    _ => Value::unknown("(invalid unary operand)"),
                }
            }
            Operation::Binary(b) => {
                let l = self.eval(&b.lhs_expr, frame);
                // Short-circuit logic so `false && unknown` stays known.
                match (b.operator, &l) {
                    (BinaryOperator::And, Value::Bool(false)) => return Value::Bool(false),
                    (BinaryOperator::Or, Value::Bool(true)) => return Value::Bool(true),
                    _ => {}
                }
                let r = self.eval(&b.rhs_expr, frame);
                binary(b.operator, l, r)
            }
        }
    }

    fn eval_traversal(&self, base: &Expression, raw_ops: &[TraversalOperator], frame: &Frame) -> Value {
        // Index expressions first, then the base (the order evaluation notes come in).
        let ops: Vec<Op> = raw_ops
            .iter()
            .map(|o| match o {
                TraversalOperator::GetAttr(id) => Op::Attr(id.as_str().to_string()),
                TraversalOperator::Index(e) => Op::Index(self.eval(e, frame)),
                TraversalOperator::LegacyIndex(n) => Op::Index(Value::Number(*n as f64)),
                TraversalOperator::AttrSplat | TraversalOperator::FullSplat => Op::Splat,
            })
            .collect();
        let ops = ops.as_slice();
        let Expression::Variable(v) = base else {
            let val = self.eval(base, frame);
            return apply_ops(val, ops, "(expression)");
        };
        let name = v.as_str();
        // Frame variables: each.key, count.index are stored under their dotted name.
        if let Some(first) = attr_at(ops, 0) {
            if let Some(val) = lookup(frame, &format!("{name}.{first}")) {
                return apply_ops(val, &ops[1..], &format!("{name}.{first}"));
            }
        }
        if let Some(val) = lookup(frame, name) {
            return apply_ops(val, ops, name);
        }
        self.named_traversal(name, ops).unwrap_or_else(|| Value::unknown(traversal_text(name, ops)))
    }

    /// `var.x`, `local.x`, `module.m...`, `data.t.n`, `path.*`, `terraform.workspace` and
    /// `type.name` of a resource of this module; `None` when the name refers to nothing known.
    fn named_traversal(&self, name: &str, ops: &[Op]) -> Option<Value> {
        match name {
            "var" => {
                let n = attr_at(ops, 0)?;
                let val = self.inst.vars.get(n).cloned().unwrap_or_else(|| Value::unknown(format!("var.{n}")));
                Some(apply_ops(val, &ops[1..], &format!("var.{n}")))
            }
            "local" => {
                let n = attr_at(ops, 0)?;
                Some(apply_ops(self.local(n), &ops[1..], &format!("local.{n}")))
            }
            "module" => Some(self.module_traversal(attr_at(ops, 0)?, ops)),
            "data" => {
                let (t, n) = (attr_at(ops, 0)?, attr_at(ops, 1)?);
                let (val, _) = self.resource(Mode::Data, t, n);
                Some(apply_ops(val, &ops[2..], &format!("data.{t}.{n}")))
            }
            "path" => {
                let dir = self.inst.src.dir.display().to_string();
                Some(apply_ops(Value::String(dir), &ops[1..], "path"))
            }
            "terraform" => (attr_at(ops, 0) == Some("workspace")).then(|| Value::String("default".into())),
            "each" | "count" | "self" => None,
            rtype => {
                let n = attr_at(ops, 0)?;
                self.inst.src.resource(Mode::Managed, rtype, n)?;
                let (val, _) = self.resource(Mode::Managed, rtype, n);
                Some(apply_ops(val, &ops[1..], &format!("{rtype}.{n}")))
            }
        }
    }

    /// `module.m.out` of a single-instance module reads one output (without evaluating the
    /// others); anything else sees the module as a value (a map, or a list/map of instances).
    fn module_traversal(&self, m: &str, ops: &[Op]) -> Value {
        let call = self.inst.src.module(m);
        let single =
            call.is_some_and(|c| attr_expr(&c.body, "for_each").is_none() && attr_expr(&c.body, "count").is_none());
        if let (true, Some(out)) = (single, attr_at(ops, 1)) {
            let children = self.children(m);
            let val = match children.first() {
                Some((_, child)) => self.module_output(child, out),
                None => Value::unknown(format!("module.{m}.{out}")),
            };
            return apply_ops(val, &ops[2..], &format!("module.{m}.{out}"));
        }
        apply_ops(self.module_value(m), &ops[1..], &format!("module.{m}"))
    }
}

fn attr_at(ops: &[Op], i: usize) -> Option<&str> {
    match ops.get(i) {
        Some(Op::Attr(id)) => Some(id.as_str()),
        _ => None,
    }
}

/// A traversal that refers to nothing known, as text: `name.attr[*]...`.
fn traversal_text(name: &str, ops: &[Op]) -> String {
    let mut desc = name.to_string();
    for op in ops {
        match op {
            Op::Attr(id) => {
                desc.push('.');
                desc.push_str(id);
            }
            _ => desc.push_str("[*]"),
        }
    }
    desc
}

/// The (key, value) pairs a `for` iterates: list index or map key (the resource address key
/// left out); `null` has none. Anything else comes back as the error.
fn collection_items(coll: Value) -> Result<Vec<(Value, Value)>, Value> {
    match coll {
        Value::List(l) => Ok(l.into_iter().enumerate().map(|(i, v)| (Value::Number(i as f64), v)).collect()),
        Value::Map(m) => Ok(m.into_iter().filter(|(k, _)| k != ADDR_KEY).map(|(k, v)| (Value::String(k), v)).collect()),
        Value::Null => Ok(Vec::new()),
        other => Err(other),
    }
}

fn lookup(frame: &Frame, name: &str) -> Option<Value> {
    frame.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn key_suffix(key: Option<&Value>) -> String {
    match key {
        None => String::new(),
        Some(Value::Number(n)) => format!("[{}]", format_number(*n)),
        Some(v) => format!("[\"{}\"]", v.to_symbolic_string().unwrap_or_default()),
    }
}

fn push_block(m: &mut BTreeMap<String, Value>, ident: &str, v: Value) {
    match m.entry(ident.to_string()).or_insert_with(|| Value::List(Vec::new())) {
        Value::List(l) => l.push(v),
        other => *other = Value::List(vec![v]),
    }
}

/// A traversal step with its index already evaluated.
enum Op {
    Attr(String),
    Index(Value),
    Splat,
}

fn apply_ops(mut val: Value, ops: &[Op], desc: &str) -> Value {
    let mut desc = desc.to_string();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Attr(key) => {
                desc = format!("{desc}.{key}");
                val = match val {
                    Value::Map(m) => match m.get(key) {
                        Some(v) => v.clone(),
                        None => match m.get(ADDR_KEY) {
                            Some(Value::String(a)) => Value::unknown(format!("{a}.{key}")),
                            _ => Value::unknown(desc.clone()),
                        },
                    },
                    Value::Unknown(u) => Value::unknown(format!("{u}.{key}")),
                    _ => Value::unknown(desc.clone()),
                };
            }
            Op::Index(idx) => {
                val = index(val, idx, &mut desc);
            }
            Op::Splat => {
                let rest = &ops[i + 1..];
                let items = match val {
                    Value::List(l) => l,
                    Value::Null => Vec::new(),
                    Value::Unknown(u) => return Value::unknown(format!("{u}[*]")),
                    other => vec![other],
                };
                return Value::List(items.into_iter().map(|v| apply_ops(v, rest, &desc)).collect());
            }
        }
    }
    val
}

fn index(val: Value, idx: &Value, desc: &mut String) -> Value {
    let shown = idx.to_symbolic_string().unwrap_or_else(|| "?".into());
    *desc = format!("{desc}[{shown}]");
    match (val, idx) {
        (Value::List(l), Value::Number(n)) => {
            l.get(*n as usize).cloned().unwrap_or_else(|| Value::unknown(desc.clone()))
        }
        (Value::Map(m), Value::String(k)) => m.get(k).cloned().unwrap_or_else(|| Value::unknown(desc.clone())),
        (Value::Map(m), Value::Number(n)) => {
            m.get(&format_number(*n)).cloned().unwrap_or_else(|| Value::unknown(desc.clone()))
        }
        (Value::Unknown(u), _) => Value::unknown(format!("{u}[{shown}]")),
        _ => Value::unknown(desc.clone()),
    }
}

fn binary(op: BinaryOperator, l: Value, r: Value) -> Value {
    use BinaryOperator as B;
    if let (Value::Unknown(a), _) | (_, Value::Unknown(a)) = (&l, &r) {
        return Value::unknown(format!("({a} {op} ...)", op = op.as_str()));
    }
    match op {
        B::Eq => Value::Bool(l == r),
        B::NotEq => Value::Bool(l != r),
        B::And | B::Or => match (l.truthy(), r.truthy()) {
            (Some(a), Some(b)) => Value::Bool(if op == B::And { a && b } else { a || b }),
            _ => Value::unknown("(invalid logic operand)"),
        },
        _ => {
            let (Some(a), Some(b)) = (to_number(&l), to_number(&r)) else {
                return Value::unknown("(invalid arithmetic operand)");
            };
            match op {
                B::Plus => Value::Number(a + b),
                B::Minus => Value::Number(a - b),
                B::Mul => Value::Number(a * b),
                B::Div => Value::Number(a / b),
                B::Mod => Value::Number(a % b),
                B::Less => Value::Bool(a < b),
                B::LessEq => Value::Bool(a <= b),
                B::Greater => Value::Bool(a > b),
                B::GreaterEq => Value::Bool(a >= b),
                _ => Value::unknown("(operator)"),
            }
        }
    }
}

fn to_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Attributes the provider computes and that other resources commonly reference. Only what
/// is deterministic from the configuration is filled in; the rest stays symbolic.
fn computed_attributes(
    rtype: &str,
    mode: Mode,
    address: &str,
    attrs: &mut BTreeMap<String, Value>,
    default_project: &Value,
) {
    let project = attr_string(attrs, "project")
        .or_else(|| default_project.to_symbolic_string())
        .unwrap_or_else(|| "${provider.project}".into());
    let at = Computed { address, project };
    match (mode, rtype) {
        (_, "google_service_account") => at.service_account(attrs),
        (Mode::Managed, "google_project_iam_custom_role") => {
            let role = at.attr_or_symbolic(attrs, "role_id");
            put_id_and_name(attrs, format!("projects/{}/roles/{role}", at.project));
        }
        (Mode::Managed, "google_organization_iam_custom_role") => {
            let role = at.attr_or_symbolic(attrs, "role_id");
            let org = at.attr_or_symbolic(attrs, "org_id");
            put_id_and_name(attrs, format!("organizations/{org}/roles/{role}"));
        }
        (_, "google_project") => {
            let pid = attr_string(attrs, "project_id").unwrap_or(at.project);
            put(attrs, "id", sym(format!("projects/{pid}")));
            put(attrs, "project_id", sym(pid));
            put(attrs, "number", Value::unknown(format!("{address}.number")));
        }
        (_, "google_secret_manager_secret") => {
            let sid = at.attr_or_symbolic(attrs, "secret_id");
            put_id_and_name(attrs, format!("projects/{}/secrets/{sid}", at.project));
        }
        (_, "google_storage_bucket") => {
            if let Some(n) = attr_string(attrs, "name") {
                put(attrs, "id", sym(n.clone()));
                put(attrs, "url", sym(format!("gs://{n}")));
            }
        }
        (_, "google_iam_workload_identity_pool") => {
            let pid = attr_string(attrs, "workload_identity_pool_id").unwrap_or_else(|| format!("${{{address}.id}}"));
            put_id_and_name(attrs, format!("projects/{}/locations/global/workloadIdentityPools/{pid}", at.project));
        }
        (_, "google_cloud_identity_group") => at.identity_group(attrs),
        (_, "google_pubsub_topic") => {
            if let Some(n) = attr_string(attrs, "name") {
                put(attrs, "id", sym(format!("projects/{}/topics/{n}", at.project)));
            }
        }
        (_, "google_bigquery_dataset") => {
            if let Some(n) = attr_string(attrs, "dataset_id") {
                put(attrs, "id", sym(format!("projects/{}/datasets/{n}", at.project)));
            }
        }
        (Mode::Data, "google_iam_policy") => {
            let bindings = attrs.get("binding").cloned().unwrap_or(Value::List(Vec::new()));
            let mut policy = BTreeMap::new();
            policy.insert("bindings".to_string(), bindings);
            put(attrs, "policy_data", Value::Map(policy));
        }
        (Mode::Data, "google_client_config") => put(attrs, "project", default_project.clone()),
        _ => {}
    }
    attrs.entry("id".to_string()).or_insert_with(|| Value::unknown(format!("{address}.id")));
}

/// The resource whose computed attributes are being filled in.
struct Computed<'a> {
    address: &'a str,
    /// Its project, or the provider's (symbolic when unknown).
    project: String,
}

impl Computed<'_> {
    /// The attribute, or its symbolic rendering `${address.key}`.
    fn attr_or_symbolic(&self, attrs: &BTreeMap<String, Value>, key: &str) -> String {
        let address = self.address;
        attr_string(attrs, key).unwrap_or_else(|| format!("${{{address}.{key}}}"))
    }

    fn service_account(&self, attrs: &mut BTreeMap<String, Value>) {
        let account = self.attr_or_symbolic(attrs, "account_id");
        let project = &self.project;
        let email = if account.contains('@') {
            account.clone()
        } else {
            format!("{account}@{project}.iam.gserviceaccount.com")
        };
        put(attrs, "email", sym(email.clone()));
        put(attrs, "member", sym(format!("serviceAccount:{email}")));
        put(attrs, "name", sym(format!("projects/{project}/serviceAccounts/{email}")));
        put(attrs, "id", sym(format!("projects/{project}/serviceAccounts/{email}")));
        put(attrs, "project", sym(project.clone()));
        put(attrs, "unique_id", Value::unknown(format!("{}.unique_id", self.address)));
    }

    fn identity_group(&self, attrs: &mut BTreeMap<String, Value>) {
        let key = attrs
            .get("group_key")
            .and_then(|g| match g {
                Value::List(l) => l.first().and_then(|x| x.get_str("id")),
                other => other.get_str("id"),
            })
            .unwrap_or_else(|| format!("${{{}.group_key}}", self.address));
        put(attrs, "name", sym(format!("groups/{key}")));
        put(attrs, "id", sym(format!("groups/{key}")));
    }
}

fn attr_string(attrs: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    attrs.get(key).and_then(|v| v.to_symbolic_string())
}

/// A string, or an unknown when it holds a symbolic `${...}` part.
fn sym(text: String) -> Value {
    if is_symbolic(&text) {
        Value::Unknown(text)
    } else {
        Value::String(text)
    }
}

/// Sets a computed attribute unless the configuration set it.
fn put(attrs: &mut BTreeMap<String, Value>, key: &str, value: Value) {
    attrs.entry(key.to_string()).or_insert(value);
}

fn put_id_and_name(attrs: &mut BTreeMap<String, Value>, id: String) {
    put(attrs, "id", sym(id.clone()));
    put(attrs, "name", sym(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_str(src: &str) -> Value {
        let world = World::new();
        let body = hcl::parse(&format!("v = {src}")).expect("parses");
        const_eval(&world, attr_expr(&body, "v").expect("attr"))
    }

    #[test]
    fn functions_and_templates() {
        assert_eq!(eval_str("upper(\"ab\")"), Value::String("AB".into()));
        assert_eq!(eval_str("format(\"%s-%d\", \"a\", 3)"), Value::String("a-3".into()));
        assert_eq!(eval_str("length(concat([1], [2, 3]))"), Value::Number(3.0));
        assert_eq!(eval_str("join(\",\", [for x in [\"b\", \"a\"] : x if x != \"b\"])"), Value::String("a".into()));
        assert_eq!(eval_str("merge({a = 1}, {b = 2})[\"b\"]"), Value::Number(2.0));
        assert_eq!(eval_str("\"x-${1 + 2}\""), Value::String("x-3".into()));
        assert!(eval_str("\"sa-${var.env}\"").is_unknown());
        assert_eq!(eval_str("\"sa-${var.env}\""), Value::Unknown("sa-${var.env}".into()));
        assert_eq!(eval_str("try(var.nope, \"d\")"), Value::String("d".into()));
        assert_eq!(
            eval_str("{ for k, v in {a = 1, b = 2} : k => v if v > 1 }"),
            Value::Map([("b".to_string(), Value::Number(2.0))].into_iter().collect())
        );
    }

    #[test]
    fn sha256_and_symbolic_function_rendering() {
        assert_eq!(eval_str("substr(sha256(\"abc\"), 0, 6)"), Value::String("ba7816".into()));
        assert_eq!(eval_str("\"b-${substr(var.x, 0, 6)}\""), Value::Unknown("b-${substr(var.x, 0, 6)}".into()));
    }

    proptest::proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        /// Whatever the text, parsing and evaluating it never panics.
        #[test]
        fn arbitrary_hcl_never_panics(text in "[a-z_{}()=\"$.,:?<>!&|+*/%0-9 \n-]{0,200}") {
            let mut src = crate::source::ModuleSrc::default();
            crate::source::parse_file_into(&mut src, "fuzz.tf", &text);
            let world = World::new();
            if let Ok(body) = hcl::parse(&format!("v = {text}")) {
                if let Some(e) = attr_expr(&body, "v") {
                    let _ = const_eval(&world, e);
                }
            }
        }
    }

    #[test]
    fn unknown_function_is_symbolic_not_an_error() {
        assert!(eval_str("regexall(\"x\", \"y\")").is_unknown());
        assert!(eval_str("provider::foo::bar(1)").is_unknown());
    }
}
