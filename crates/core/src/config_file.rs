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
    let located = |span: Option<std::ops::Range<usize>>, field: String, message: String| {
        let (line, column) = span.map(|s| line_col(src, s.start)).unzip();
        FileError { path: path.to_string(), line, column, field, message }
    };
    let de = toml::Deserializer::parse(src).map_err(|e| located(e.span(), String::new(), e.message().to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // `toml::Spanned` shows up as a private path segment: hide it.
        let field = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let field = if field == "." { String::new() } else { field };
        let inner = e.into_inner();
        located(inner.span(), field, inner.message().to_string())
    })
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
}
