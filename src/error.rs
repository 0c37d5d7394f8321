//! The one error type of the crate: an `ErrorKind` plus the context a person
//! needs to find the problem (file, tensor, byte offset). Findings such as
//! missing keys or size mismatches are not errors: they live in
//! `check::CheckReport` as data.

use serde::Serialize;
use std::fmt;

/// What went wrong, as a stable machine-readable tag (the JSON and the tests
/// match on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The operating system or the browser failed a read.
    Io,
    /// The file ends before a structure it declares.
    Truncated,
    /// No reader recognises the bytes.
    UnsupportedFormat,
    /// A declared length or count is larger than the reader allows.
    LimitExceeded,
    /// A safetensors header that is not valid JSON or breaks the format rules.
    InvalidHeader,
    /// Tensor data ranges that overlap, leave holes or leave the file.
    InvalidOffsets,
    /// A dtype or storage type this reader does not know.
    UnknownDtype,
    /// A zip archive whose directory or entries are inconsistent.
    BadZip,
    /// A pickle that cannot be interpreted.
    BadPickle,
    /// A pickle opcode that no protocol defines.
    UnknownOpcode,
    /// A pickle that references globals PyTorch's safe loader refuses.
    UnsafePickle,
    /// A GGUF file whose structure is inconsistent.
    BadGguf,
    /// A sharded index and its shards disagree, or a shard is missing.
    BadShards,
    /// A config JSON that is malformed or of an unknown family.
    BadConfig,
    /// A preset name that is not built in.
    UnknownPreset,
    /// Bad command-line or API arguments.
    BadArgument,
    /// The operation was cancelled by the user.
    Cancelled,
    /// A file at a URL could not be read: not found, access denied, a
    /// server that ignores Range, or the network failing past its retries.
    Remote,
}

/// An error with its kind and context. Messages are lowercase without a final
/// period, in the style of the Rust ecosystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The real-world cause and its fix, when known (boxed: most errors
    /// have none, and every `Result` carries the room).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub known: Option<Box<KnownCause>>,
}

/// A real-world cause (a Git LFS pointer, an HTML page saved as weights
/// ...) with a stable id that `--json` carries, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownCause {
    pub cause: &'static str,
    /// A command or a line of Python.
    pub fix: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            file: None,
            tensor: None,
            offset: None,
            known: None,
        }
    }

    /// Name the real-world cause and its fix.
    pub fn because(mut self, cause: &'static str, fix: impl Into<String>) -> Error {
        self.known = Some(Box::new(KnownCause {
            cause,
            fix: fix.into(),
        }));
        self
    }

    /// The stable id of the real-world cause, when known.
    pub fn cause(&self) -> Option<&'static str> {
        self.known.as_ref().map(|known| known.cause)
    }

    /// What to do about it, when known.
    pub fn fix(&self) -> Option<&str> {
        self.known.as_ref().map(|known| known.fix.as_str())
    }

    pub fn at(mut self, offset: u64) -> Error {
        self.offset.get_or_insert(offset);
        self
    }

    pub fn in_file(mut self, file: &str) -> Error {
        if self.file.is_none() && !file.is_empty() {
            self.file = Some(file.to_string());
        }
        self
    }

    pub fn for_tensor(mut self, tensor: &str) -> Error {
        self.tensor.get_or_insert_with(|| tensor.to_string());
        self
    }
}

/// Shorthand constructors keep parser code short and the kinds consistent.
pub fn err(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::new(kind, message)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(tensor) = &self.tensor {
            write!(f, "tensor {tensor:?}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(offset) = self.offset {
            write!(f, " (at byte {offset})")?;
        }
        if let Some(fix) = self.fix() {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
