//! The CNI error result (spec §5 "Error") and its well-known codes.

use serde::{Deserialize, Serialize};

/// Well-known error codes (spec §5 Error; Go `pkg/types` constants).
pub mod code {
    /// Catch-all used by the Go library when a delegate fails without saying why.
    pub const UNKNOWN: u32 = 0;
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const INVALID_NETNS: u32 = 8;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// First code free for plugin-specific errors.
    pub const PLUGIN_SPECIFIC_MIN: u32 = 100;
    /// What the Go skel reports for a plain (non-CNI) error.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: printed on stdout as
/// `{"cniVersion": "...", "code": N, "msg": "...", "details": "..."}` with exit status 1.
///
/// `Display` is `msg` or `msg; details`, as in the Go library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg}{}", details_suffix(.details))]
pub struct CniError {
    #[serde(default)]
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!("; {details}")
    }
}

/// Wire shape with the protocol version the spec asks for (Go's omits it).
#[derive(Serialize)]
struct ErrorReply<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Replace the details text.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Code 1.
    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Self::new(code::INCOMPATIBLE_VERSION, msg, "")
    }
    /// Code 2; the spec wants the key and value of the field in the message.
    pub fn unsupported_field(msg: impl Into<String>) -> Self {
        Self::new(code::UNSUPPORTED_FIELD, msg, "")
    }
    /// Code 3.
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Self::new(code::UNKNOWN_CONTAINER, msg, "")
    }
    /// Code 4; the spec wants the names of the variables in the message.
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg, "")
    }
    /// Code 5.
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO_FAILURE, msg, "")
    }
    /// Code 6.
    pub fn decoding(msg: impl Into<String>) -> Self {
        Self::new(code::DECODING_FAILURE, msg, "")
    }
    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETWORK_CONFIG, msg, "")
    }
    /// Code 8 (Go library: CNI_NETNS is the plugin's own namespace).
    pub fn invalid_netns(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETNS, msg, "")
    }
    /// Code 11.
    pub fn try_again_later(msg: impl Into<String>) -> Self {
        Self::new(code::TRY_AGAIN_LATER, msg, "")
    }
    /// Code 50 (STATUS: cannot service ADD).
    pub fn not_available(msg: impl Into<String>) -> Self {
        Self::new(code::PLUGIN_NOT_AVAILABLE, msg, "")
    }
    /// Code 51 (STATUS: not available, existing containers may have limited connectivity).
    pub fn limited_connectivity(msg: impl Into<String>) -> Self {
        Self::new(code::LIMITED_CONNECTIVITY, msg, "")
    }
    /// Code 999, what the Go skel uses for any non-CNI error.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, msg, "")
    }
    /// A plugin-specific code; codes below 100 are reserved by the spec and are
    /// moved up to 100 + code so a typo cannot impersonate a well-known code.
    pub fn plugin(code: u32, msg: impl Into<String>) -> Self {
        let code = if code < code::PLUGIN_SPECIFIC_MIN {
            code::PLUGIN_SPECIFIC_MIN + code
        } else {
            code
        };
        Self::new(code, msg, "")
    }

    /// The spec's error JSON, with `cniVersion` set.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let reply = ErrorReply {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_value(reply).unwrap_or(serde_json::Value::Null)
    }

    /// [`CniError::to_json`] rendered like Go's `Print` (4-space indent).
    pub fn to_string_pretty(&self, cni_version: &str) -> String {
        let reply = ErrorReply {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        crate::types::pretty(&reply).unwrap_or_else(|_| {
            format!(
                "{{\"code\": {}, \"msg\": \"error encoding failed\"}}",
                self.code
            )
        })
    }

    /// Parse an error JSON printed by a plugin (with or without `cniVersion`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
