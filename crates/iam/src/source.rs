//! Reading one Terraform/OpenTofu module folder: every `*.tf` file is parsed (hcl-edit, which
//! keeps byte spans so each block gets a file:line), then converted to hcl-rs's simpler tree
//! for evaluation. Parse errors become diagnostics with file:line, never panics.

use hcl::{Block, Body, Expression};
use hcl_edit::Span;
use std::path::{Path, PathBuf};

/// Limits: a module folder this large is not a Terraform module (guards memory and time).
pub const MAX_FILES_PER_MODULE: usize = 20_000;
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Loc {
    pub file: String,
    pub line: u32,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// An input problem (unparseable HCL, unreadable file...): reported with file:line, exit 2.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub default: Option<Expression>,
    pub has_type: bool,
    pub description: Option<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub value: Option<Expression>,
    pub description: Option<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct ResourceDecl {
    /// `resource` or `data`.
    pub mode: Mode,
    pub rtype: String,
    pub name: String,
    pub body: Body,
    pub loc: Loc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Managed,
    Data,
}

#[derive(Debug, Clone)]
pub struct ModuleCall {
    pub name: String,
    pub source: Option<String>,
    pub body: Body,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct ProviderDecl {
    pub name: String,
    pub body: Body,
    pub loc: Loc,
}

/// Everything declared in one module folder.
#[derive(Debug, Clone, Default)]
pub struct ModuleSrc {
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub variables: Vec<Variable>,
    pub locals: Vec<(String, Expression, Loc)>,
    pub outputs: Vec<Output>,
    pub resources: Vec<ResourceDecl>,
    pub modules: Vec<ModuleCall>,
    pub providers: Vec<ProviderDecl>,
    /// `terraform { required_providers { ... } }` entries: (name, version constraint, loc).
    pub required_providers: Vec<(String, Option<String>, Loc)>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ModuleSrc {
    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }
    pub fn local(&self, name: &str) -> Option<&(String, Expression, Loc)> {
        self.locals.iter().find(|l| l.0 == name)
    }
    pub fn output(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name == name)
    }
    pub fn resource(&self, mode: Mode, rtype: &str, name: &str) -> Option<&ResourceDecl> {
        self.resources.iter().find(|r| r.mode == mode && r.rtype == rtype && r.name == name)
    }
    pub fn module(&self, name: &str) -> Option<&ModuleCall> {
        self.modules.iter().find(|m| m.name == name)
    }
}

/// Lexically normalises a path (`a/b/../c` → `a/c`) so locations read well and module
/// folders reached twice are recognised as the same.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                let popped = matches!(out.components().next_back(), Some(std::path::Component::Normal(_))) && out.pop();
                if !popped {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Lists the `*.tf` files of a folder, sorted (deterministic output).
pub fn tf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tf") && path.is_file() {
            files.push(path);
            if files.len() > MAX_FILES_PER_MODULE {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_FILES_PER_MODULE} .tf files in {}",
                    dir.display()
                )));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn line_of(text: &str, offset: usize) -> u32 {
    let end = offset.min(text.len());
    let newlines = text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

/// Loads one module folder. I/O errors and parse errors land in `diagnostics`.
pub fn load_module(dir: &Path) -> ModuleSrc {
    let dir = normalize(dir);
    let mut src = ModuleSrc { dir: dir.clone(), ..ModuleSrc::default() };
    let files = match tf_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            src.diagnostics.push(Diagnostic {
                loc: Loc { file: dir.display().to_string(), line: 0 },
                message: format!("cannot read module folder: {e}"),
            });
            return src;
        }
    };
    for path in files {
        let file = path.display().to_string();
        src.files.push(file.clone());
        let text = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                src.diagnostics.push(Diagnostic {
                    loc: Loc { file, line: 0 },
                    message: format!("file larger than {MAX_FILE_BYTES} bytes, not analyzed"),
                });
                continue;
            }
            _ => match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    src.diagnostics
                        .push(Diagnostic { loc: Loc { file, line: 0 }, message: format!("cannot read: {e}") });
                    continue;
                }
            },
        };
        parse_file_into(&mut src, &file, &text);
    }
    src
}

/// Parses HCL text as Terraform does. hcl-edit 0.10 rejects some newlines that Terraform's
/// parser ignores (a conditional spread over lines inside a `for` expression or a template
/// interpolation); when the text does not parse as is, it is parsed again with those newlines
/// joined (`join_insignificant_newlines`). The first error is the one reported.
pub fn parse_hcl(text: &str) -> Result<hcl_edit::structure::Body, hcl_edit::parser::Error> {
    match hcl_edit::parser::parse_body(text) {
        Ok(b) => Ok(b),
        Err(first) => match join_insignificant_newlines(text) {
            Some(joined) => hcl_edit::parser::parse_body(&joined).map_err(|_| first),
            None => Err(first),
        },
    }
}

/// Parses one file's text and adds its declarations to `src`.
pub fn parse_file_into(src: &mut ModuleSrc, file: &str, text: &str) {
    let body = match parse_hcl(text) {
        Ok(b) => b,
        Err(e) => {
            let loc = e.location();
            src.diagnostics.push(Diagnostic {
                loc: Loc { file: file.to_string(), line: u32::try_from(loc.line()).unwrap_or(0) },
                message: format!("HCL parse error at column {}: {}", loc.column(), e.message()),
            });
            return;
        }
    };
    for structure in body.into_iter() {
        let line = structure.span().map(|s| line_of(text, s.start)).unwrap_or(0);
        let loc = Loc { file: file.to_string(), line };
        let hcl_edit::structure::Structure::Block(block) = structure else {
            src.diagnostics
                .push(Diagnostic { loc, message: "top-level attribute is not valid in a Terraform file".into() });
            continue;
        };
        let block: Block = block.into();
        add_block(src, block, loc);
    }
}

/// Nesting deeper than this is not hand-written HCL: the rewrite gives up.
const MAX_NESTING: usize = 256;

/// What a bracket opened, for `join_insignificant_newlines`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nest {
    /// `(`, `[`, `{ for ...}` or `${ ... }`: newlines are insignificant (go-hcl ignores them).
    Joined,
    /// `{` of a block body or an object: newlines separate items and are kept.
    Kept,
    /// `%{` ... `}` template directive inside a string: like `Joined`, then back to the string.
    Directive,
}

/// Terraform ignores newlines inside parentheses, brackets, `for` expressions and template
/// interpolations; hcl-edit does not everywhere. Returns the text with those newlines replaced
/// by spaces, each removed newline put back after the next newline that is kept, so the lines
/// of top-level blocks stay where they were. Comments inside a joined span become spaces (a
/// line comment would otherwise swallow the rest of the expression). `None` when the text has
/// nothing to join, or a shape the rewrite does not handle (a heredoc inside a joined span).
pub fn join_insignificant_newlines(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut stack: Vec<Nest> = Vec::new();
    // Inside a string literal: the depth of `stack` at which the string was opened.
    let mut strings: Vec<usize> = Vec::new();
    let mut pending_newlines = 0usize;
    let mut joined_any = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let joined = matches!(stack.last(), Some(Nest::Joined | Nest::Directive));
        if strings.last().is_some_and(|d| *d == stack.len()) {
            let step = string_step(b, i, &mut stack, &mut strings);
            out.extend_from_slice(&b[i..i + step]);
            i += step;
            continue;
        }
        match c {
            b'"' => strings.push(stack.len()),
            b'#' | b'/' if c == b'#' || b.get(i + 1) == Some(&b'/') => {
                let end = b[i..].iter().position(|x| *x == b'\n').map_or(b.len(), |p| i + p);
                if joined {
                    out.extend(std::iter::repeat_n(b' ', end - i));
                } else {
                    out.extend_from_slice(&b[i..end]);
                }
                i = end;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                for &x in &b[i..end] {
                    if x == b'\n' && joined {
                        out.push(b' ');
                        pending_newlines += 1;
                    } else {
                        out.push(x);
                    }
                }
                i = end;
                continue;
            }
            b'<' if b.get(i + 1) == Some(&b'<') => {
                if joined {
                    return None;
                }
                let end = heredoc_end(text, i)?;
                out.extend_from_slice(&b[i..end]);
                i = end;
                continue;
            }
            b'(' | b'[' => stack.push(Nest::Joined),
            b'{' => {
                let rest = text[i + 1..].trim_start();
                let is_for = rest.starts_with("for") && rest[3..].starts_with(|ch: char| ch.is_whitespace());
                stack.push(if is_for { Nest::Joined } else { Nest::Kept });
            }
            b')' | b']' | b'}' => {
                stack.pop();
            }
            b'\n' if joined => {
                out.push(b' ');
                pending_newlines += 1;
                joined_any = true;
                i += 1;
                continue;
            }
            b'\n' => {
                out.push(b'\n');
                out.extend(std::iter::repeat_n(b'\n', pending_newlines));
                pending_newlines = 0;
                i += 1;
                continue;
            }
            _ => {}
        }
        if stack.len() > MAX_NESTING {
            return None;
        }
        out.push(c);
        i += 1;
    }
    out.extend(std::iter::repeat_n(b'\n', pending_newlines));
    if !joined_any {
        return None;
    }
    String::from_utf8(out).ok()
}

/// One step inside a string literal at `b[i]`: an escape (two bytes), the opening of an
/// interpolation or directive (pushed on `stack`), the closing quote (popped from `strings`),
/// or a plain byte. Returns how many bytes to copy.
fn string_step(b: &[u8], i: usize, stack: &mut Vec<Nest>, strings: &mut Vec<usize>) -> usize {
    let c = b[i];
    match c {
        b'\\' => (b.len() - i).min(2),
        b'$' | b'%' if b.get(i + 1) == Some(&b'{') && b.get(i.wrapping_sub(1)) != Some(&c) => {
            stack.push(if c == b'$' { Nest::Joined } else { Nest::Directive });
            2
        }
        b'"' => {
            strings.pop();
            1
        }
        _ => 1,
    }
}

/// The byte after a heredoc that starts at `start` (`<<EOT` or `<<-EOT` ... the closing
/// marker's line), or `None` when it is not one.
fn heredoc_end(text: &str, start: usize) -> Option<usize> {
    let rest = &text[start + 2..];
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let marker: String = rest.chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_').collect();
    if marker.is_empty() {
        return None;
    }
    let body_start = start + text[start..].find('\n')? + 1;
    let mut pos = body_start;
    for line in text[body_start..].split_inclusive('\n') {
        pos += line.len();
        if line.trim() == marker {
            return Some(pos);
        }
    }
    None
}

fn label(block: &Block, i: usize) -> Option<String> {
    block.labels.get(i).map(|l| l.as_str().to_string())
}

pub fn attr<'a>(body: &'a Body, name: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key.as_str() == name).map(|a| &a.expr)
}

fn literal_string(expr: Option<&Expression>) -> Option<String> {
    match expr? {
        Expression::String(s) => Some(s.clone()),
        Expression::TemplateExpr(t) => Some(t.to_string().trim_matches('"').to_string()),
        _ => None,
    }
}

fn add_block(src: &mut ModuleSrc, block: Block, loc: Loc) {
    let ident = block.identifier.as_str().to_string();
    let bad = |src: &mut ModuleSrc, loc: Loc, what: &str| {
        src.diagnostics.push(Diagnostic { loc, message: format!("malformed {what} block (missing label)") });
    };
    match ident.as_str() {
        "variable" => {
            let Some(name) = label(&block, 0) else {
                return bad(src, loc, "variable");
            };
            src.variables.push(Variable {
                name,
                default: attr(&block.body, "default").cloned(),
                has_type: attr(&block.body, "type").is_some(),
                description: literal_string(attr(&block.body, "description")),
                loc,
            });
        }
        "locals" => {
            for a in block.body.attributes() {
                src.locals.push((a.key.as_str().to_string(), a.expr.clone(), loc.clone()));
            }
        }
        "output" => {
            let Some(name) = label(&block, 0) else {
                return bad(src, loc, "output");
            };
            src.outputs.push(Output {
                name,
                value: attr(&block.body, "value").cloned(),
                description: literal_string(attr(&block.body, "description")),
                loc,
            });
        }
        "resource" | "data" => {
            let (Some(rtype), Some(name)) = (label(&block, 0), label(&block, 1)) else {
                return bad(src, loc, &ident);
            };
            src.resources.push(ResourceDecl {
                mode: if ident == "data" { Mode::Data } else { Mode::Managed },
                rtype,
                name,
                body: block.body,
                loc,
            });
        }
        "module" => {
            let Some(name) = label(&block, 0) else {
                return bad(src, loc, "module");
            };
            src.modules.push(ModuleCall {
                name,
                source: literal_string(attr(&block.body, "source")),
                body: block.body,
                loc,
            });
        }
        "provider" => {
            let Some(name) = label(&block, 0) else {
                return bad(src, loc, "provider");
            };
            src.providers.push(ProviderDecl { name, body: block.body, loc });
        }
        "terraform" => {
            for rp in block.body.blocks().filter(|b| b.identifier.as_str() == "required_providers") {
                for a in rp.body.attributes() {
                    let version = match &a.expr {
                        Expression::Object(o) => o.iter().find_map(|(k, v)| {
                            let key = match k {
                                hcl::ObjectKey::Identifier(i) => i.as_str().to_string(),
                                hcl::ObjectKey::Expression(e) => literal_string(Some(e)).unwrap_or_default(),
                                _ => String::new(),
                            };
                            if key == "version" {
                                literal_string(Some(v))
                            } else {
                                None
                            }
                        }),
                        other => literal_string(Some(other)),
                    };
                    src.required_providers.push((a.key.as_str().to_string(), version, loc.clone()));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_has_file_and_line() {
        let mut src = ModuleSrc::default();
        parse_file_into(&mut src, "x.tf", "variable \"a\" {}\n\nresource \"x\" \"y\" {\n  a = \n}\n");
        assert_eq!(src.diagnostics.len(), 1);
        assert_eq!(src.diagnostics[0].loc.file, "x.tf");
        assert!(src.diagnostics[0].loc.line >= 4, "{:?}", src.diagnostics);
        assert!(src.variables.is_empty(), "nothing from a file that does not parse");
    }

    #[test]
    fn blocks_get_their_lines() {
        let mut src = ModuleSrc::default();
        parse_file_into(
            &mut src,
            "m.tf",
            "# c\nvariable \"a\" {\n type = string\n description = \"d\"\n}\n\nresource \"google_x\" \"y\" {\n}\n",
        );
        assert_eq!(src.variables[0].loc.line, 2);
        assert_eq!(src.variables[0].description.as_deref(), Some("d"));
        assert_eq!(src.resources[0].loc.line, 7);
    }

    #[test]
    fn joins_newlines_terraform_ignores_and_keeps_block_lines() {
        let text = "locals {\n  m = {\n    for k, v in var.m :\n    k =>\n    v ?\n    { a = 1 } : { a = 2 }\n  }\n}\n\nvariable \"x\" {}\n";
        let joined = join_insignificant_newlines(text).expect("something to join");
        assert_eq!(joined.lines().count(), text.lines().count(), "{joined}");
        let mut src = ModuleSrc::default();
        parse_file_into(&mut src, "j.tf", text);
        assert!(src.diagnostics.is_empty(), "{:?}", src.diagnostics);
        assert_eq!(src.variables[0].loc.line, 10, "lines after the joined span are unchanged");
        // Object bodies keep their newlines; a line comment inside a joined span is blanked.
        let kept = "x = merge(\n  # c\n  {\n    a = 1\n    b = 2\n  },\n)\n";
        let joined = join_insignificant_newlines(kept).expect("joined");
        assert!(joined.contains("a = 1\n"), "{joined}");
        assert!(!joined.contains("# c"), "{joined}");
        // A heredoc inside a joined span is left to the parser.
        assert_eq!(join_insignificant_newlines("x = f(\n<<EOT\nA\nEOT\n)\n"), None);
        // Text with nothing to join is not rewritten.
        assert_eq!(join_insignificant_newlines("a = 1\n"), None);
    }

    proptest::proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        /// Whatever the text, the rewrite never panics and never moves a line.
        #[test]
        fn joining_keeps_the_line_count(text in "[a-z{}()\\[\\]=\"$%#/*<.:?\\\\ \n-]{0,200}") {
            if let Some(joined) = join_insignificant_newlines(&text) {
                proptest::prop_assert_eq!(joined.matches('\n').count(), text.matches('\n').count());
            }
        }
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize(Path::new("a/b/../c/./d")), PathBuf::from("a/c/d"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }
}
