//! The part of EDN that Jepsen histories use: maps, vectors, lists, sets,
//! keywords, symbols, strings, integers, floats, `nil`, booleans; `,` is
//! whitespace and `;` starts a comment. Errors name the column.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// `:type` is `Keyword("type")`.
    Keyword(String),
    Symbol(String),
    Vector(Vec<Value>),
    List(Vec<Value>),
    Set(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// The value under keyword `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => {
                entries.iter().find(|(k, _)| matches!(k, Value::Keyword(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// A string's contents; any other value as EDN (keys and elements
    /// compared as text).
    pub fn text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        }
    }

    pub fn keyword(&self) -> Option<&str> {
        match self {
            Value::Keyword(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |f: &mut fmt::Formatter<'_>, open: &str, items: &[Value], close: &str| {
            write!(f, "{open}")?;
            for (i, v) in items.iter().enumerate() {
                write!(f, "{}{v}", if i == 0 { "" } else { " " })?;
            }
            write!(f, "{close}")
        };
        match self {
            Value::Nil => write!(f, "nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Keyword(k) => write!(f, ":{k}"),
            Value::Symbol(s) => write!(f, "{s}"),
            Value::Vector(v) => seq(f, "[", v, "]"),
            Value::List(v) => seq(f, "(", v, ")"),
            Value::Set(v) => seq(f, "#{", v, "}"),
            Value::Map(m) => {
                write!(f, "{{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    write!(f, "{}{k} {v}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// What is wrong, and the 1-based line and column where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct EdnError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for EdnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// Reads one value that makes up the whole of `text`.
pub fn parse(text: &str) -> Result<Value, EdnError> {
    let mut r = Reader { s: text.as_bytes(), text, i: 0 };
    let v = r.value()?;
    r.skip_space();
    if r.i < r.s.len() {
        return Err(r.error("unexpected text after the value"));
    }
    Ok(v)
}

/// Reads every top-level value of `text`, each with the 1-based line it
/// starts on.
pub fn parse_all(text: &str) -> Result<Vec<(usize, Value)>, EdnError> {
    let mut r = Reader { s: text.as_bytes(), text, i: 0 };
    let mut out = Vec::new();
    let (mut line, mut counted) = (1, 0);
    loop {
        r.skip_space();
        if r.i >= r.s.len() {
            return Ok(out);
        }
        line += r.s[counted..r.i].iter().filter(|&&c| c == b'\n').count();
        counted = r.i;
        out.push((line, r.value()?));
    }
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Reader<'_> {
    fn error(&self, message: impl Into<String>) -> EdnError {
        let before = &self.text[..self.i.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |k| k + 1);
        EdnError {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }

    fn skip_space(&mut self) {
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b',' => self.i += 1,
                b';' => {
                    while self.s.get(self.i).is_some_and(|&c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn value(&mut self) -> Result<Value, EdnError> {
        self.skip_space();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.error("expected a value, found the end of the line"));
        };
        match c {
            b'{' => {
                self.i += 1;
                let items = self.items(b'}')?;
                if items.len() % 2 == 1 {
                    return Err(self.error("a map needs an even number of forms"));
                }
                let mut it = items.into_iter();
                let mut m = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.push((k, v));
                }
                Ok(Value::Map(m))
            }
            b'[' => {
                self.i += 1;
                Ok(Value::Vector(self.items(b']')?))
            }
            b'(' => {
                self.i += 1;
                Ok(Value::List(self.items(b')')?))
            }
            b'#' if self.s.get(self.i + 1) == Some(&b'{') => {
                self.i += 2;
                Ok(Value::Set(self.items(b'}')?))
            }
            b'"' => self.string(),
            b':' => {
                self.i += 1;
                let t = self.token();
                if t.is_empty() {
                    return Err(self.error("a keyword needs a name after ':'"));
                }
                Ok(Value::Keyword(t.to_string()))
            }
            b'}' | b']' | b')' => Err(self.error(format!("unexpected '{}'", c as char))),
            _ => {
                let start = self.i;
                let t = self.token().to_string();
                if t.is_empty() {
                    return Err(
                        self.error(format!("unexpected '{}'", self.text[self.i..].chars().next().unwrap_or('?')))
                    );
                }
                match t.as_str() {
                    "nil" => Ok(Value::Nil),
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ if t.starts_with(|c: char| c.is_ascii_digit())
                        || (t.len() > 1
                            && t.starts_with(['-', '+'])
                            && t[1..].starts_with(|c: char| c.is_ascii_digit())) =>
                    {
                        let digits = t.trim_end_matches(['N', 'M']);
                        if let Ok(i) = digits.parse::<i64>() {
                            Ok(Value::Int(i))
                        } else if let Ok(x) = digits.parse::<f64>() {
                            Ok(Value::Float(x))
                        } else {
                            self.i = start;
                            Err(self.error(format!("{t:?} is not a number")))
                        }
                    }
                    _ => Ok(Value::Symbol(t.to_string())),
                }
            }
        }
    }

    /// Values up to the `close` byte, which is consumed.
    fn items(&mut self, close: u8) -> Result<Vec<Value>, EdnError> {
        let open = self.i - 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match self.s.get(self.i) {
                None => {
                    self.i = open;
                    return Err(
                        self.error(format!("this '{}' is never closed by a '{}'", self.s[open] as char, close as char))
                    );
                }
                Some(&c) if c == close => {
                    self.i += 1;
                    return Ok(items);
                }
                Some(_) => items.push(self.value()?),
            }
        }
    }

    fn token(&mut self) -> &str {
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if c.is_ascii_whitespace() || b",{}[]()\";".contains(&c) {
                break;
            }
            self.i += 1;
        }
        &self.text[start..self.i]
    }

    fn string(&mut self) -> Result<Value, EdnError> {
        let open = self.i;
        self.i += 1;
        let mut out = String::new();
        let mut run = self.i;
        loop {
            match self.s.get(self.i) {
                None => {
                    self.i = open;
                    return Err(self.error("a string that never ends"));
                }
                Some(b'"') => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    return Ok(Value::Str(out));
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.i]);
                    let escaped = match self.s.get(self.i + 1) {
                        Some(b'n') => '\n',
                        Some(b't') => '\t',
                        Some(b'r') => '\r',
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        _ => return Err(self.error("an unknown escape in a string")),
                    };
                    out.push(escaped);
                    self.i += 2;
                    run = self.i;
                }
                Some(_) => self.i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jepsen_operation() {
        let v = parse(r#"{:process 9, :type :invoke, :f :append, :key "0", :value "x 9 0 y"} ; note"#).unwrap();
        assert_eq!(v.get("process"), Some(&Value::Int(9)));
        assert_eq!(v.get("type").and_then(Value::keyword), Some("invoke"));
        assert_eq!(v.get("value"), Some(&Value::Str("x 9 0 y".into())));
        let v = parse(r#"{:value [[:append :x 1] [:r :x [1 2]] #{3}], :time -12, :q "a\"b"}"#).unwrap();
        assert_eq!(v.to_string(), r#"{:value [[:append :x 1] [:r :x [1 2]] #{3}], :time -12, :q "a\"b"}"#);
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(
            parse("[1 {:a 1").unwrap_err(),
            EdnError { line: 1, column: 4, message: "this '{' is never closed by a '}'".into() }
        );
        assert_eq!(parse("{:a}").unwrap_err().message, "a map needs an even number of forms");
        assert_eq!(parse(r#"{:a "x}"#).unwrap_err().column, 5);
        let e = parse_all("{:a 1}\n\n{:b [1 2}\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 9), "{e}");
        assert_eq!(e.message, "unexpected '}'");
        let all = parse_all("{:a 1}\n; comment\n\n{:b 2} {:c 3}\n").unwrap();
        assert_eq!(all.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 4, 4]);
        assert_eq!(parse("{:a 1} 2").unwrap_err().column, 8);
        assert_eq!(parse("12x").unwrap_err().message, "\"12x\" is not a number");
        assert_eq!(parse("]").unwrap_err().message, "unexpected ']'");
    }
}
