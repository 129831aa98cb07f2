//! Configuration files (scenarios, cluster files, instances): TOML parsed
//! into serde types, with every error naming the file, line and field.

use serde::de::DeserializeOwned;
use std::fmt;

/// An error in a scenario (or any TOML) file: where, which field, what.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// 1-based line and column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// The most a file given as input (a scenario, a cluster file, a
/// history) may hold: a scenario with a million inputs is about 65 MB.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads a text file given as input, after checking it is a regular file
/// (a pipe or a device is refused, not waited on or read without end) of
/// at most [`MAX_FILE_BYTES`]. The error names the path.
pub fn read_text(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let p = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {p}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("cannot read {p}: not a regular file"));
    }
    let too_big = || format!("cannot read {p}: larger than {} MiB", MAX_FILE_BYTES >> 20);
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut src = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut src))
        .map_err(|e| format!("cannot read {p}: {e}"))?;
    if src.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(src)
}

/// Reads a configuration file ([`read_text`]); the error names the file.
/// Returns the path as text (for later errors) and the contents.
pub fn read(path: &std::path::Path) -> Result<(String, String), FileError> {
    let name = path.display().to_string();
    match read_text(path) {
        Ok(src) => Ok((name, src)),
        Err(message) => Err(FileError { path: name, line: None, column: None, field: String::new(), message }),
    }
}

/// Parses TOML text into `T`; errors carry the line and the field path.
pub fn parse_toml<T: DeserializeOwned>(path: &str, src: &str) -> Result<T, FileError> {
    parse_toml_part(path, src, src, |at| at)
}

/// Parses `text`, a part of the file `src` whose byte `at` is the file's
/// byte `to_src(at)`, into `T`: errors name the line and column in `src`.
pub fn parse_toml_part<T: DeserializeOwned>(
    path: &str,
    src: &str,
    text: &str,
    to_src: impl Fn(usize) -> usize,
) -> Result<T, FileError> {
    let located = |span: Option<std::ops::Range<usize>>, field: String, message: String| {
        let (line, column) = span.map(|s| line_col(src, to_src(s.start))).unzip();
        FileError { path: path.to_string(), line, column, field, message }
    };
    let de = toml::Deserializer::parse(text).map_err(|e| located(e.span(), String::new(), e.message().to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // `toml::Spanned` shows up as a private path segment: hide it.
        let field = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let field = if field == "." { String::new() } else { field };
        let inner = e.into_inner();
        located(inner.span(), field, inner.message().to_string())
    })
}

/// Parses entry `i` of the `[[key]]` entries cut out of `src` (at `r`, see
/// [`cut_array_tables`]) as `T`, which holds `key` as a list: errors are
/// located in the file and name the entry `key[i]`.
pub fn parse_entry<T: DeserializeOwned>(
    path: &str,
    src: &str,
    key: &str,
    i: usize,
    r: &std::ops::Range<usize>,
) -> Result<T, FileError> {
    parse_toml_part(path, src, &src[r.clone()], |at| at + r.start).map_err(|mut e| {
        if let Some(field) = e.field.strip_prefix(&format!("{key}[0]")) {
            e.field = format!("{key}[{i}]{field}");
        }
        e
    })
}

/// A TOML file with its `[[key]]` array of tables cut out, so that each
/// entry is parsed on its own: the TOML parser holds its tokens and events
/// for the whole text it parses, about 60 times the text's size, which for a
/// scenario with a million inputs is gigabytes.
#[derive(Debug, PartialEq)]
pub struct ArrayTables {
    /// The file without its entries, each left as the newline that ended it.
    pub rest: String,
    /// Each entry's byte range in the file (its header to the next header
    /// that is not its own), in file order.
    pub entries: Vec<std::ops::Range<usize>>,
    /// Per entry: where it was cut in `rest`, and the bytes cut up to and
    /// including it.
    cuts: Vec<(usize, usize)>,
}

impl ArrayTables {
    /// The file's offset of `rest`'s byte `at`.
    pub fn file_offset(&self, at: usize) -> usize {
        let k = self.cuts.partition_point(|&(cut, _)| cut <= at);
        at + k.checked_sub(1).map_or(0, |k| self.cuts[k].1)
    }
}

/// Cuts the `[[key]]` entries out of `src`. An entry runs from its header to
/// the next table header, except headers that extend it (`[key.x]`,
/// `[[key.x]]`). None when there is no entry, or a header only the whole
/// parse places (a quoted key, or `[key.x]` after another table): the
/// caller parses the whole text then.
pub fn cut_array_tables(src: &str, key: &str) -> Option<ArrayTables> {
    use toml_parser::lexer::TokenKind as K;
    let mut tokens = toml_parser::Source::new(src).lex().peekable();
    let mut entries = Vec::new();
    let mut open: Option<usize> = None; // start of the entry being read
    let mut depth = 0usize; // brackets open inside a value
    let mut line_start = 0usize; // offset of the current line's first byte
    let mut at_line_start = true;
    while let Some(t) = tokens.next() {
        match t.kind() {
            K::Eof => break,
            K::Newline => {
                line_start = t.span().end();
                at_line_start = depth == 0;
                continue;
            }
            K::Whitespace | K::Comment => continue,
            K::LeftSquareBracket if at_line_start => {
                // A table header: `[` or `[[`, then its first key.
                let double = tokens.next_if(|t| t.kind() == K::LeftSquareBracket).is_some();
                while tokens.next_if(|t| t.kind() == K::Whitespace).is_some() {}
                let first = tokens.next()?;
                let dotted = {
                    while tokens.next_if(|t| t.kind() == K::Whitespace).is_some() {}
                    tokens.peek().is_some_and(|t| t.kind() == K::Dot)
                };
                if matches!(first.kind(), K::BasicString | K::LiteralString) {
                    return None;
                }
                if first.kind() == K::Atom && src[first.span().start()..first.span().end()] == *key {
                    if double && !dotted {
                        if let Some(start) = open.replace(line_start) {
                            entries.push(start..line_start);
                        }
                    } else if open.is_none() {
                        return None;
                    }
                } else if let Some(start) = open.take() {
                    entries.push(start..line_start);
                }
                // The rest of the header line.
                while tokens.next_if(|t| !matches!(t.kind(), K::Newline | K::Eof)).is_some() {}
            }
            K::LeftSquareBracket | K::LeftCurlyBracket => depth += 1,
            K::RightSquareBracket | K::RightCurlyBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
        at_line_start = false;
    }
    if let Some(start) = open {
        entries.push(start..src.len());
    }
    if entries.is_empty() {
        return None;
    }
    let mut rest = String::with_capacity(src.len() - entries.iter().map(|r| r.len()).sum::<usize>() + entries.len());
    let mut cuts = Vec::with_capacity(entries.len());
    let (mut from, mut cut) = (0, 0);
    for r in &entries {
        rest.push_str(&src[from..r.start]);
        let newline = if src[..r.end].ends_with('\n') { "\n" } else { "" };
        cut += r.len() - newline.len();
        cuts.push((rest.len(), cut));
        rest.push_str(newline);
        from = r.end;
    }
    rest.push_str(&src[from..]);
    Some(ArrayTables { rest, entries, cuts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        name: String,
        inner: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        rate: f64,
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse_toml::<File>("x.toml", "name = \"a\"\n[inner]\nrate = \"fast\"\n").unwrap_err();
        assert_eq!((e.path.as_str(), e.line, e.field.as_str()), ("x.toml", Some(3), "inner.rate"));
        assert!(e.to_string().starts_with("x.toml:3:"), "{e}");
        let e = parse_toml::<File>("x.toml", "name = \"a\"\n[inner]\nrate = 1.0\nspeed = 2\n").unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("speed"), "{e}");
        let e = parse_toml::<File>("x.toml", "name = \n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    const FILE: &str = r#"name = "x"  # [[input]] in a comment
groups = [
[[0, 1]],
[[2]],
]
note = """
[[input]]
"""
[[input]]
at = "1s"
value = [
[1, 2],
]
[input.value2]
a = 1

[params]
x = 1
[[ input ]]
at = "2s"
[[input.more]]
b = 2
"#;

    #[test]
    fn array_tables_are_cut_at_their_headers_and_nowhere_else() {
        let cut = cut_array_tables(FILE, "input").unwrap();
        let texts: Vec<&str> = cut.entries.iter().map(|r| &FILE[r.clone()]).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].starts_with("[[input]]\nat = \"1s\"") && texts[0].ends_with("a = 1\n\n"), "{texts:?}");
        assert!(texts[1].starts_with("[[ input ]]") && texts[1].ends_with("b = 2\n"), "{texts:?}");
        // Every byte left maps back to itself in the file.
        for (at, byte) in cut.rest.bytes().enumerate() {
            assert_eq!(FILE.as_bytes()[cut.file_offset(at)], byte, "rest byte {at}");
        }
        assert_eq!(cut.file_offset(cut.rest.len()), FILE.len());
        let rest: toml::Table = toml::from_str(&cut.rest).unwrap();
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["groups", "name", "note", "params"]);
        // Each entry parses alone to what the whole file holds.
        let whole: toml::Table = toml::from_str(FILE).unwrap();
        let entries: Vec<toml::Value> =
            texts.iter().map(|t| toml::from_str::<toml::Table>(t).unwrap()["input"][0].clone()).collect();
        assert_eq!(whole["input"].as_array().unwrap(), &entries);
    }

    #[test]
    fn headers_only_the_whole_parse_places_are_left_to_it() {
        assert_eq!(cut_array_tables("a = 1\n[b]\nc = 2\n", "input"), None);
        assert_eq!(cut_array_tables("[[\"input\"]]\nat = 1\n", "input"), None);
        assert_eq!(cut_array_tables("[[input]]\nat = 1\n[x]\n[input.value]\nb = 1\n", "input"), None);
        assert_eq!(cut_array_tables("[[inputs]]\nat = 1\n", "input"), None);
        // An entry at the end without a newline is cut whole.
        let cut = cut_array_tables("a = 1\n[[input]]\nat = 1", "input").unwrap();
        assert_eq!(cut.entries, vec![6..22]);
        assert_eq!(cut.rest, "a = 1\n");
        assert_eq!(cut.file_offset(6), 22);
    }
}
