//! Places in the manifest text: byte spans turned into file, line and column.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::ManifestError;

/// A line and column (1-based) in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Turns byte spans of one manifest's text into located errors.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl<'a> Place<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Place { file, text }
    }

    pub fn location(&self, span: Range<usize>) -> Location {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location { line, column }
    }

    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ManifestError {
        ManifestError::at(self.file, self.location(span), message)
    }

    /// An error at a spanned value.
    pub fn at<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> ManifestError {
        self.error(value.span(), message)
    }

    /// An error about the whole file.
    pub fn nowhere(&self, message: impl Into<String>) -> ManifestError {
        ManifestError::at(self.file, Location::default(), message)
    }

    /// A TOML deserialisation error, at its span when it has one.
    pub fn toml_error(&self, error: &toml::de::Error) -> ManifestError {
        let mut message = error.message().trim().to_string();
        if message.is_empty() {
            // toml says nothing for some stray characters (a lone `\r`).
            let found = error.span().and_then(|span| self.text.get(span.start..)).and_then(|rest| rest.chars().next());
            message = match found {
                Some(c) => format!("`{}` is not valid TOML here", c.escape_debug()),
                None => "not valid TOML".to_string(),
            };
        }
        match error.span() {
            Some(span) => self.error(span, message),
            None => self.nowhere(message),
        }
    }

    /// A path written in the manifest, relative to the manifest's folder
    /// (joined only: nothing on disk is looked at).
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        self.file.parent().unwrap_or(Path::new(".")).join(path)
    }
}
