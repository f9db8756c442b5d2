//! One error type for the crate: every variant names the operation and the object.

use nix::errno::Errno;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request: `creating macvlan mv0 on eth9: no such device (ENODEV)`.
    /// `ext_ack` is the kernel's extended-ack text when it sent one.
    #[error("{op}: {}{}", errno_text(*.errno), ext_ack.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kernel {
        op: String,
        errno: Errno,
        ext_ack: Option<String>,
    },

    /// An object we looked up does not exist (link by name, namespace by name...).
    #[error("{op}: not found")]
    NotFound { op: String },

    /// A syscall or file operation outside netlink failed (setns, mount, open, sysctl).
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },

    /// A netlink reply could not be decoded or did not match the request.
    #[error("{op}: bad netlink reply: {detail}")]
    Protocol { op: String, detail: String },

    /// Input rejected before anything was sent (bad name, bad MAC...).
    #[error("{0}")]
    Invalid(String),
}

fn errno_text(errno: Errno) -> String {
    format!("{} ({errno:?})", errno.desc().to_lowercase())
}

impl Error {
    /// The errno behind a kernel or I/O failure, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    /// True for ENODEV / ENOENT / ESRCH-like "it is not there" failures.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
            || matches!(
                self.errno(),
                Some(Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL)
            )
    }

    /// True when the object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(Errno::EEXIST)
    }

    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }
}
