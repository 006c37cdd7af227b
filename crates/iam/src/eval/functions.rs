//! Built-in functions of the static evaluator: a table from name to one small function over
//! the evaluated arguments. A function answers `None` when its arguments do not fit (wrong
//! type, an unknown in the way, a regular expression...): the call then stays symbolic
//! (`name(args)`), never an error. Functions not in the table are symbolic too.

use super::{to_number, ADDR_KEY, MAX_COLLECTION_ITEMS};
use crate::value::{format_number, is_symbolic, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A built-in over the evaluated arguments; `None` when they do not fit.
type Builtin = fn(&[Value]) -> Option<Value>;

/// Functions over known values. Names are distinct (a unit test checks it).
const FUNCTIONS: &[(&str, Builtin)] = &[
    // Collections.
    ("concat", concat),
    ("flatten", flatten),
    ("distinct", distinct),
    ("toset", toset),
    ("compact", compact),
    ("merge", merge),
    ("keys", keys),
    ("values", values),
    ("lookup", lookup),
    ("element", element),
    ("index", index),
    ("contains", contains),
    ("length", length),
    ("zipmap", zipmap),
    ("one", one),
    ("sort", sort),
    ("reverse", reverse),
    ("slice", slice),
    ("range", range),
    // Sets.
    ("setproduct", setproduct),
    ("setunion", setunion),
    ("setintersection", setintersection),
    ("setsubtract", setsubtract),
    // Numbers and booleans.
    ("min", min),
    ("max", max),
    ("abs", abs),
    ("floor", floor),
    ("ceil", ceil),
    ("sum", sum),
    ("tonumber", tonumber),
    ("alltrue", alltrue),
    ("anytrue", anytrue),
    // Strings.
    ("tostring", tostring),
    ("lower", lower),
    ("upper", upper),
    ("title", title),
    ("trimspace", trimspace),
    ("trimprefix", trimprefix),
    ("trimsuffix", trimsuffix),
    ("trim", trim),
    ("startswith", startswith),
    ("endswith", endswith),
    ("strcontains", strcontains),
    ("replace", replace),
    ("substr", substr),
    ("split", split),
    ("join", join),
    ("format", format),
    ("formatlist", formatlist),
    // Encodings.
    ("jsonencode", jsonencode),
    ("sha256", sha256),
    ("jsondecode", jsondecode),
    ("urlencode", urlencode),
];

/// Built-in functions. Any unknown argument makes the result unknown unless the function can
/// still answer (`try`, `coalesce`, `length` of a known list...).
pub fn call_function(name: &str, args: Vec<Value>, module_dir: &Path) -> Value {
    // No function in the table reads files yet (`file`, `templatefile` stay symbolic).
    let _ = module_dir;
    if let Some(v) = unknown_tolerant(name, &args) {
        return v;
    }
    if name == "length" && args.iter().any(Value::contains_unknown) {
        // A list of unknowns still has a known length. A map counts all its keys here, the
        // resource address key included (the known-value `length` below does not).
        match args.first() {
            Some(Value::List(l)) => return Value::Number(l.len() as f64),
            Some(Value::Map(m)) => return Value::Number(m.len() as f64),
            _ => {}
        }
    }
    // Every other function is tried even over partly-unknown arguments: it answers `None`
    // when an unknown is in the way.
    partial_function(name, &args).unwrap_or_else(|| unknown_result(name, &args))
}

/// Functions whose answer does not depend on every argument being known.
fn unknown_tolerant(name: &str, args: &[Value]) -> Option<Value> {
    match name {
        "try" => Some(
            args.iter()
                .find(|a| !a.is_unknown())
                .cloned()
                .unwrap_or_else(|| args.first().cloned().unwrap_or(Value::Null)),
        ),
        "can" => Some(match args.first() {
            Some(Value::Unknown(_)) | None => Value::unknown("can(...)"),
            Some(_) => Value::Bool(true),
        }),
        "coalesce" => Some(coalesce(name, args)),
        "sensitive" | "nonsensitive" | "tomap" | "tolist" | "tobool" => {
            Some(args.first().cloned().unwrap_or(Value::Null))
        }
        _ => None,
    }
}

fn coalesce(name: &str, args: &[Value]) -> Value {
    for a in args {
        match a {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::Unknown(_) => return unknown_result(name, args),
            v => return v.clone(),
        }
    }
    Value::Null
}

/// The call rendered as source-like text (no nested `${}`), e.g. `substr(var.x, 0, 6)`.
fn unknown_result(name: &str, args: &[Value]) -> Value {
    let shown: Vec<String> = args
        .iter()
        .map(|a| match a {
            Value::Unknown(u) => u.trim_start_matches("${").trim_end_matches('}').to_string(),
            Value::String(s) => format!("{s:?}"),
            other => other.to_symbolic_string().unwrap_or_else(|| format!("({})", other.type_name())),
        })
        .collect();
    Value::unknown(format!("{name}({})", shown.join(", ")))
}

/// Functions over known values; `None` when the arguments do not fit (caller renders unknown).
fn partial_function(name: &str, args: &[Value]) -> Option<Value> {
    let (_, function) = FUNCTIONS.iter().find(|(n, _)| *n == name)?;
    function(args)
}

fn as_list(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::List(l) => Some(l.clone()),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

fn string_arg(args: &[Value], i: usize) -> Option<String> {
    match args.get(i)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(format_number(*n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first argument as a list (`null` is the empty list).
fn first_list(args: &[Value]) -> Option<Vec<Value>> {
    as_list(args.first()?)
}

fn first_number(args: &[Value]) -> Option<f64> {
    to_number(args.first()?)
}

/// The items in order, without repeats.
fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// A known string, or an unknown when it holds a symbolic `${...}` part.
fn string_or_unknown(text: String, unknown: bool) -> Value {
    if unknown {
        Value::Unknown(text)
    } else {
        Value::String(text)
    }
}

fn concat(args: &[Value]) -> Option<Value> {
    let mut out = Vec::new();
    for a in args {
        out.extend(as_list(a)?);
    }
    Some(Value::List(out))
}

fn flatten(args: &[Value]) -> Option<Value> {
    fn flat(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::List(l) => l.iter().for_each(|x| flat(x, out)),
            other => out.push(other.clone()),
        }
    }
    let mut out = Vec::new();
    flat(args.first()?, &mut out);
    Some(Value::List(out))
}

fn distinct(args: &[Value]) -> Option<Value> {
    Some(Value::List(dedup(first_list(args)?)))
}

fn toset(args: &[Value]) -> Option<Value> {
    let mut out = dedup(first_list(args)?);
    if out.iter().all(|x| matches!(x, Value::String(_))) {
        out.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    Some(Value::List(out))
}

fn compact(args: &[Value]) -> Option<Value> {
    let items = first_list(args)?;
    Some(Value::List(items.into_iter().filter(|x| !matches!(x, Value::Null) && x.as_str() != Some("")).collect()))
}

fn merge(args: &[Value]) -> Option<Value> {
    let mut out = BTreeMap::new();
    for a in args {
        match a {
            Value::Map(m) => out.extend(m.iter().filter(|(k, _)| *k != ADDR_KEY).map(|(k, v)| (k.clone(), v.clone()))),
            Value::Null => {}
            _ => return None,
        }
    }
    Some(Value::Map(out))
}

fn keys(args: &[Value]) -> Option<Value> {
    match args.first()? {
        Value::Map(m) => {
            Some(Value::List(m.keys().filter(|k| *k != ADDR_KEY).map(|k| Value::String(k.clone())).collect()))
        }
        _ => None,
    }
}

fn values(args: &[Value]) -> Option<Value> {
    match args.first()? {
        Value::Map(m) => Some(Value::List(m.iter().filter(|(k, _)| *k != ADDR_KEY).map(|(_, v)| v.clone()).collect())),
        _ => None,
    }
}

fn lookup(args: &[Value]) -> Option<Value> {
    match args.first()? {
        Value::Map(m) => match m.get(&string_arg(args, 1)?) {
            Some(v) => Some(v.clone()),
            None => args.get(2).cloned(),
        },
        _ => None,
    }
}

fn element(args: &[Value]) -> Option<Value> {
    let l = first_list(args)?;
    let n = to_number(args.get(1)?)? as usize;
    if l.is_empty() {
        return None;
    }
    Some(l[n % l.len()].clone())
}

fn index(args: &[Value]) -> Option<Value> {
    let l = first_list(args)?;
    let pos = l.iter().position(|x| Some(x) == args.get(1))?;
    Some(Value::Number(pos as f64))
}

fn contains(args: &[Value]) -> Option<Value> {
    Some(Value::Bool(first_list(args)?.contains(args.get(1)?)))
}

fn length(args: &[Value]) -> Option<Value> {
    match args.first()? {
        Value::List(l) => Some(Value::Number(l.len() as f64)),
        Value::Map(m) => Some(Value::Number(m.keys().filter(|k| *k != ADDR_KEY).count() as f64)),
        Value::String(st) => Some(Value::Number(st.chars().count() as f64)),
        _ => None,
    }
}

fn zipmap(args: &[Value]) -> Option<Value> {
    let k = first_list(args)?;
    let vals = as_list(args.get(1)?)?;
    Some(Value::Map(k.iter().zip(vals).filter_map(|(k, v)| Some((k.to_symbolic_string()?, v))).collect()))
}

fn one(args: &[Value]) -> Option<Value> {
    let l = first_list(args)?;
    match l.len() {
        0 => Some(Value::Null),
        1 => Some(l[0].clone()),
        _ => None,
    }
}

fn sort(args: &[Value]) -> Option<Value> {
    let mut l: Vec<String> = first_list(args)?.iter().filter_map(|x| x.to_symbolic_string()).collect();
    l.sort();
    Some(Value::List(l.into_iter().map(Value::String).collect()))
}

fn reverse(args: &[Value]) -> Option<Value> {
    let mut l = first_list(args)?;
    l.reverse();
    Some(Value::List(l))
}

fn slice(args: &[Value]) -> Option<Value> {
    let l = first_list(args)?;
    let start = to_number(args.get(1)?)? as usize;
    let end = to_number(args.get(2)?)? as usize;
    Some(Value::List(l.get(start..end.min(l.len()))?.to_vec()))
}

fn range(args: &[Value]) -> Option<Value> {
    let nums: Vec<f64> = args.iter().filter_map(to_number).collect();
    let (start, end, step) = match nums.as_slice() {
        [e] => (0.0, *e, 1.0),
        [s, e] => (*s, *e, 1.0),
        [s, e, st] => (*s, *e, *st),
        _ => return None,
    };
    if step == 0.0 {
        return None;
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        out.push(Value::Number(x));
        x += step;
        if out.len() > MAX_COLLECTION_ITEMS {
            return None;
        }
    }
    Some(Value::List(out))
}

fn setproduct(args: &[Value]) -> Option<Value> {
    let mut acc: Vec<Vec<Value>> = vec![Vec::new()];
    for a in args {
        let l = as_list(a)?;
        let mut next = Vec::new();
        for prefix in &acc {
            for x in &l {
                let mut p = prefix.clone();
                p.push(x.clone());
                next.push(p);
                if next.len() > MAX_COLLECTION_ITEMS {
                    return None;
                }
            }
        }
        acc = next;
    }
    Some(Value::List(acc.into_iter().map(Value::List).collect()))
}

fn setunion(args: &[Value]) -> Option<Value> {
    let mut all = Vec::new();
    for a in args {
        all.extend(as_list(a)?);
    }
    Some(Value::List(dedup(all)))
}

fn setintersection(args: &[Value]) -> Option<Value> {
    let mut out = first_list(args)?;
    for a in &args[1..] {
        let l = as_list(a)?;
        out.retain(|x| l.contains(x));
    }
    Some(Value::List(out))
}

fn setsubtract(args: &[Value]) -> Option<Value> {
    let l = as_list(args.get(1)?)?;
    Some(Value::List(first_list(args)?.into_iter().filter(|x| !l.contains(x)).collect()))
}

/// The numeric arguments folded with `f` (non-numbers are skipped); `None` when there are none.
fn fold_numbers(args: &[Value], f: fn(f64, f64) -> f64) -> Option<Value> {
    let nums: Vec<f64> = args.iter().filter_map(to_number).collect();
    let init = *nums.first()?;
    Some(Value::Number(nums.into_iter().fold(init, f)))
}

fn min(args: &[Value]) -> Option<Value> {
    fold_numbers(args, f64::min)
}

fn max(args: &[Value]) -> Option<Value> {
    fold_numbers(args, f64::max)
}

fn abs(args: &[Value]) -> Option<Value> {
    Some(Value::Number(first_number(args)?.abs()))
}

fn floor(args: &[Value]) -> Option<Value> {
    Some(Value::Number(first_number(args)?.floor()))
}

fn ceil(args: &[Value]) -> Option<Value> {
    Some(Value::Number(first_number(args)?.ceil()))
}

fn sum(args: &[Value]) -> Option<Value> {
    Some(Value::Number(first_list(args)?.iter().filter_map(to_number).sum()))
}

fn tonumber(args: &[Value]) -> Option<Value> {
    Some(Value::Number(first_number(args)?))
}

fn alltrue(args: &[Value]) -> Option<Value> {
    Some(Value::Bool(first_list(args)?.iter().all(|x| x.truthy() == Some(true))))
}

fn anytrue(args: &[Value]) -> Option<Value> {
    Some(Value::Bool(first_list(args)?.iter().any(|x| x.truthy() == Some(true))))
}

/// A string function of the first argument.
fn map_string(args: &[Value], f: impl FnOnce(String) -> String) -> Option<Value> {
    Some(Value::String(f(string_arg(args, 0)?)))
}

/// A predicate over the first two string arguments.
fn test_strings(args: &[Value], f: impl FnOnce(&str, &str) -> bool) -> Option<Value> {
    Some(Value::Bool(f(&string_arg(args, 0)?, &string_arg(args, 1)?)))
}

fn tostring(args: &[Value]) -> Option<Value> {
    map_string(args, |s| s)
}

fn lower(args: &[Value]) -> Option<Value> {
    map_string(args, |s| s.to_lowercase())
}

fn upper(args: &[Value]) -> Option<Value> {
    map_string(args, |s| s.to_uppercase())
}

fn title(args: &[Value]) -> Option<Value> {
    let capitalize = |w: &str| {
        let mut c = w.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => String::new(),
        }
    };
    map_string(args, |s| s.split(' ').map(capitalize).collect::<Vec<_>>().join(" "))
}

fn trimspace(args: &[Value]) -> Option<Value> {
    map_string(args, |s| s.trim().to_string())
}

fn trimprefix(args: &[Value]) -> Option<Value> {
    let (a, p) = (string_arg(args, 0)?, string_arg(args, 1)?);
    Some(Value::String(a.strip_prefix(p.as_str()).unwrap_or(&a).to_string()))
}

fn trimsuffix(args: &[Value]) -> Option<Value> {
    let (a, p) = (string_arg(args, 0)?, string_arg(args, 1)?);
    Some(Value::String(a.strip_suffix(p.as_str()).unwrap_or(&a).to_string()))
}

fn trim(args: &[Value]) -> Option<Value> {
    let (a, cut) = (string_arg(args, 0)?, string_arg(args, 1)?);
    Some(Value::String(a.trim_matches(|c| cut.contains(c)).to_string()))
}

fn startswith(args: &[Value]) -> Option<Value> {
    test_strings(args, |a, b| a.starts_with(b))
}

fn endswith(args: &[Value]) -> Option<Value> {
    test_strings(args, |a, b| a.ends_with(b))
}

fn strcontains(args: &[Value]) -> Option<Value> {
    test_strings(args, |a, b| a.contains(b))
}

fn replace(args: &[Value]) -> Option<Value> {
    let (a, from, to) = (string_arg(args, 0)?, string_arg(args, 1)?, string_arg(args, 2)?);
    if from.len() > 1 && from.starts_with('/') && from.ends_with('/') {
        return None; // regular expressions are not evaluated
    }
    Some(Value::String(a.replace(&from, &to)))
}

fn substr(args: &[Value]) -> Option<Value> {
    let a: Vec<char> = string_arg(args, 0)?.chars().collect();
    let offset = to_number(args.get(1)?)? as usize;
    let length = to_number(args.get(2)?)?;
    let end = if length < 0.0 { a.len() } else { (offset + length as usize).min(a.len()) };
    Some(Value::String(a.get(offset.min(a.len())..end)?.iter().collect()))
}

fn split(args: &[Value]) -> Option<Value> {
    let (separator, text) = (string_arg(args, 0)?, string_arg(args, 1)?);
    Some(Value::List(text.split(separator.as_str()).map(|x| Value::String(x.to_string())).collect()))
}

fn join(args: &[Value]) -> Option<Value> {
    let sep = string_arg(args, 0)?;
    let mut parts = Vec::new();
    for a in &args[1..] {
        for x in as_list(a)? {
            parts.push(x.to_symbolic_string()?);
        }
    }
    let unknown = parts.iter().any(|p| is_symbolic(p));
    Some(string_or_unknown(parts.join(&sep), unknown))
}

fn format(args: &[Value]) -> Option<Value> {
    let rendered = format_string(&string_arg(args, 0)?, &args[1..])?;
    Some(string_or_unknown(rendered, args[1..].iter().any(Value::is_unknown)))
}

/// `format` over lists: one string per row; scalar arguments repeat on every row.
fn formatlist(args: &[Value]) -> Option<Value> {
    let fmt = string_arg(args, 0)?;
    let lists: Vec<Option<Vec<Value>>> = args[1..].iter().map(as_list).collect();
    let n = lists.iter().flatten().map(Vec::len).max().unwrap_or(1);
    let mut out = Vec::new();
    for i in 0..n {
        let row: Vec<Value> = args[1..]
            .iter()
            .zip(&lists)
            .map(|(a, l)| match l {
                Some(l) => l.get(i).cloned().unwrap_or(Value::Null),
                None => a.clone(),
            })
            .collect();
        let rendered = format_string(&fmt, &row)?;
        out.push(string_or_unknown(rendered, row.iter().any(Value::is_unknown)));
    }
    Some(Value::List(out))
}

fn jsonencode(args: &[Value]) -> Option<Value> {
    let v = args.first()?;
    if v.contains_unknown() {
        return None;
    }
    Some(Value::String(v.to_json().to_string()))
}

fn sha256(args: &[Value]) -> Option<Value> {
    use sha2::Digest;
    Some(Value::String(hex::encode(sha2::Sha256::digest(string_arg(args, 0)?.as_bytes()))))
}

/// Terraform's `urlencode`: unreserved bytes as they are, space as `+`, the rest `%XX`
/// (deny policies name their parent this way).
fn urlencode(args: &[Value]) -> Option<Value> {
    map_string(args, |text| {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
                b' ' => out.push('+'),
                other => out.push_str(&format!("%{other:02X}")),
            }
        }
        out
    })
}

fn jsondecode(args: &[Value]) -> Option<Value> {
    Some(Value::from_json(&serde_json::from_str(&string_arg(args, 0)?).ok()?))
}

fn format_string(fmt: &str, args: &[Value]) -> Option<String> {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Skip flags/width, then the verb.
        let mut verb = None;
        while let Some(&n) = chars.peek() {
            chars.next();
            if n.is_ascii_alphabetic() || n == '%' {
                verb = Some(n);
                break;
            }
        }
        match verb? {
            '%' => out.push('%'),
            'q' => out.push_str(&format!("\"{}\"", it.next()?.to_symbolic_string()?)),
            _ => out.push_str(&it.next()?.to_symbolic_string()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Value>) -> Value {
        call_function(name, args, Path::new("."))
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn list(items: &[Value]) -> Value {
        Value::List(items.to_vec())
    }

    #[test]
    fn function_names_are_distinct() {
        let mut names: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name appears twice in FUNCTIONS");
        // The unknown-tolerant ones are answered before the table and must not hide in it.
        for tolerant in ["try", "can", "coalesce", "sensitive", "nonsensitive", "tomap", "tolist", "tobool"] {
            assert!(!names.contains(&tolerant), "{tolerant}");
        }
    }

    #[test]
    fn representative_functions_evaluate() {
        assert_eq!(call("upper", vec![s("ab")]), s("AB"));
        assert_eq!(call("urlencode", vec![s("a.googleapis.com/projects/p 1")]), s("a.googleapis.com%2Fprojects%2Fp+1"));
        assert_eq!(call("title", vec![s("hello big  world")]), s("Hello Big  World"));
        assert_eq!(call("max", vec![Value::Number(3.0), s("7"), Value::Number(1.0)]), Value::Number(7.0));
        assert_eq!(call("min", vec![]), Value::unknown("min()"));
        assert_eq!(call("toset", vec![list(&[s("b"), s("a"), s("b")])]), list(&[s("a"), s("b")]));
        assert_eq!(
            call("setunion", vec![list(&[Value::Number(1.0), Value::Number(2.0)]), list(&[Value::Number(2.0)])]),
            list(&[Value::Number(1.0), Value::Number(2.0)])
        );
        assert_eq!(
            call("replace", vec![s("a-b"), s("/-/"), s("_")]),
            Value::unknown("replace(\"a-b\", \"/-/\", \"_\")")
        );
        assert_eq!(
            call("format", vec![s("%s-%q"), s("a"), Value::unknown("var.b")]),
            Value::Unknown("a-\"${var.b}\"".into())
        );
        assert_eq!(call("startswith", vec![s("abc"), s("ab")]), Value::Bool(true));
    }

    #[test]
    fn partly_unknown_arguments() {
        let u = Value::unknown("var.u");
        assert_eq!(call("length", vec![list(&[u.clone(), s("a")])]), Value::Number(2.0));
        assert_eq!(
            call("coalesce", vec![Value::Null, u.clone(), s("x")]),
            Value::unknown("coalesce((null), var.u, \"x\")")
        );
        assert_eq!(call("try", vec![u.clone(), s("d")]), s("d"));
        assert_eq!(call("concat", vec![list(&[s("a")]), list(std::slice::from_ref(&u))]), list(&[s("a"), u.clone()]));
        assert_eq!(call("upper", vec![u]), Value::unknown("upper(var.u)"));
        assert_eq!(call("regexall", vec![s("x"), s("y")]), Value::unknown("regexall(\"x\", \"y\")"));
    }
}
