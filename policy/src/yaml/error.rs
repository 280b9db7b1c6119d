//! The one error type of the reader, and the positions errors carry.
//!
//! Every failure (a syntax error of the scanner or parser, a value go-yaml refuses such as
//! `!!int abc`, a conversion YAMLToJSON refuses such as `.inf`, a limit, or a serde error of
//! typed decoding) is an [`Error`] with a message and, where known, the 1-based line and column
//! in the whole text given to [`documents`](super::documents). go-yaml's own messages count lines
//! inconsistently (0-based for parser errors, relative to the `---` chunk in kubectl); we always
//! report the absolute, 1-based position, and keep go-yaml's wording of the problem so that a
//! message can be matched against what kubectl prints.

use std::fmt;

/// A YAML syntax or conversion error, 1-based line and column where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// 1-based line in the whole text.
    pub line: Option<usize>,
    /// 1-based column (in characters) on that line.
    pub column: Option<usize>,
    /// What went wrong, without the position.
    pub message: String,
}

impl Error {
    /// An error at a known position.
    pub(crate) fn at(pos: Pos, message: impl Into<String>) -> Error {
        Error {
            line: Some(pos.line),
            column: Some(pos.column),
            message: message.into(),
        }
    }

    /// An error without a position (serde's custom errors start like this and get the
    /// position of the node they were raised for on the way out).
    pub(crate) fn msg(message: impl Into<String>) -> Error {
        Error {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// Sets the position unless the error already has one (the innermost node wins).
    pub(crate) fn or_at(mut self, pos: Pos) -> Error {
        if self.line.is_none() {
            self.line = Some(pos.line);
            self.column = Some(pos.column);
        }
        self
    }

    /// The message with its position, as `line 3 column 7: message`.
    pub fn located(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("line {l} column {c}: {}", self.message),
            (Some(l), None) => format!("line {l}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::msg(msg.to_string())
    }
}

/// A 1-based position in the whole text (line, column in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Where a chunk of text starts inside the whole text, so that positions counted from the
/// chunk's start (as go-yaml counts them) can be reported as absolute ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// 1-based line of the chunk's first character.
    pub line: usize,
    /// Number of characters before the chunk's first character on its line (a chunk starts
    /// mid-line only after JSON objects, see `stream.rs`).
    pub column: usize,
}

impl Origin {
    #[cfg(test)]
    pub(crate) const START: Origin = Origin { line: 1, column: 0 };

    /// The absolute position of a 0-based (line, column) counted from the chunk's start.
    pub(crate) fn pos(self, line: usize, column: usize) -> Pos {
        Pos {
            line: self.line.saturating_add(line),
            column: if line == 0 {
                self.column.saturating_add(column).saturating_add(1)
            } else {
                column.saturating_add(1)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_maps_first_line_columns_only() {
        let o = Origin { line: 5, column: 3 };
        assert_eq!(o.pos(0, 0), Pos { line: 5, column: 4 });
        assert_eq!(o.pos(2, 0), Pos { line: 7, column: 1 });
    }

    #[test]
    fn inner_position_wins() {
        let e = Error::msg("x").or_at(Pos { line: 2, column: 3 });
        let e = e.or_at(Pos { line: 1, column: 1 });
        assert_eq!((e.line, e.column), (Some(2), Some(3)));
        assert_eq!(e.located(), "line 2 column 3: x");
        assert_eq!(e.to_string(), "x");
    }
}
