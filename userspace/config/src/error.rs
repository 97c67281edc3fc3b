//! Configuration errors: every one names the file, the position and the field.

use std::fmt;
use std::ops::Range;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to [`super::load`] or [`super::parse`].
    pub file: String,
    /// Where in the file; `None` when the file could not be read at all.
    pub position: Option<Position>,
    /// Dotted field path such as `subnet[0].pool[1].range`; empty for syntax errors.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in one file, in file order. Never empty when returned as `Err`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }
}

/// One error per line, `file:line:col: field: message`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Collects errors for one source text and turns byte offsets into positions.
pub(crate) struct Errors<'t> {
    text: &'t str,
    file: String,
    line_starts: Vec<usize>,
    /// (byte offset, error): sorted by offset at the end so output follows the file.
    found: Vec<(usize, ConfigError)>,
}

impl<'t> Errors<'t> {
    pub(crate) fn new(text: &'t str, file: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Errors {
            text,
            file: file.to_string(),
            line_starts,
            found: Vec::new(),
        }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        // line_starts[0] == 0, so the partition point is at least 1.
        let line_idx = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line_idx];
        // Offsets from the parser are char boundaries; fall back to bytes otherwise.
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Position {
            line: line_idx + 1,
            column: column + 1,
        }
    }

    pub(crate) fn push(&mut self, span: &Range<usize>, field: &str, message: impl Into<String>) {
        let err = ConfigError {
            file: self.file.clone(),
            position: Some(self.position(span.start)),
            field: field.to_string(),
            message: message.into(),
        };
        self.found.push((span.start, err));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(crate) fn finish(mut self) -> ConfigErrors {
        // Stable: errors at the same place keep the order they were found in.
        self.found.sort_by_key(|(off, _)| *off);
        self.found.dedup_by(|a, b| a.1 == b.1);
        ConfigErrors {
            errors: self.found.into_iter().map(|(_, e)| e).collect(),
        }
    }
}

/// Closest candidate to `key` among `allowed`, for "did you mean" hints.
pub(crate) fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let k = norm(key);
    let mut best: Option<(usize, &'a str)> = None;
    for &cand in allowed {
        let d = edit_distance(&k, &norm(cand));
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    // A hint only when the distance is small relative to the word.
    let limit = (k.chars().count().max(3) / 3).max(1);
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (`xpd` -> `xdp`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let e = Errors::new("ab\nçd = 1\n", "f");
        assert_eq!(e.position(0), Position { line: 1, column: 1 });
        assert_eq!(e.position(3), Position { line: 2, column: 1 });
        // 'ç' is two bytes: byte 5 is the third character of line 2.
        assert_eq!(e.position(5), Position { line: 2, column: 2 });
        assert_eq!(e.position(6), Position { line: 2, column: 3 });
    }

    #[test]
    fn suggestions() {
        let allowed = ["default-time", "min-time", "max-time", "renewal-factor"];
        assert_eq!(suggest("defualt-time", &allowed), Some("default-time"));
        assert_eq!(suggest("min_time", &allowed), Some("min-time"));
        assert_eq!(suggest("colour", &allowed), None);
        assert_eq!(suggest("xpd", &["auto", "xdp", "udp"]), Some("xdp"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
