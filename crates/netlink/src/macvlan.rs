//! macvlan/macvtap specific types: modes, flags, source-MAC operations.

use std::fmt;
use std::str::FromStr;

use crate::MacAddr;

/// macvlan/macvtap mode, in the kernel's spelling.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Children cannot talk to each other at all.
    Private,
    /// Kernel default: child-to-child traffic goes out to the switch (needs hairpin).
    #[default]
    Vepa,
    /// Children talk to each other directly inside the kernel.
    Bridge,
    /// One child takes over the parent (with optional nopromisc).
    Passthru,
    /// Child receives only frames whose source MAC is on its list.
    Source,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Private,
        Mode::Vepa,
        Mode::Bridge,
        Mode::Passthru,
        Mode::Source,
    ];
    /// MACVLAN_MODE_* value.
    pub fn to_kernel(self) -> u32 {
        match self {
            Mode::Private => 1,
            Mode::Vepa => 2,
            Mode::Bridge => 4,
            Mode::Passthru => 8,
            Mode::Source => 16,
        }
    }
    pub fn from_kernel(v: u32) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.to_kernel() == v)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Private => "private",
            Mode::Vepa => "vepa",
            Mode::Bridge => "bridge",
            Mode::Passthru => "passthru",
            Mode::Source => "source",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown macvlan mode {0:?}: expected one of private, vepa, bridge, passthru, source")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseModeError(s.to_string()))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operation on a source-mode child's MAC list (IFLA_MACVLAN_MACADDR_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMacOp {
    Add,
    Del,
    Flush,
    Set,
}

impl FromStr for SourceMacOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "add" => Ok(Self::Add),
            "del" => Ok(Self::Del),
            "flush" => Ok(Self::Flush),
            "set" => Ok(Self::Set),
            _ => Err(format!(
                "unknown source MAC operation {s:?}: expected add, del, flush or set"
            )),
        }
    }
}

/// Everything needed to create a macvlan or macvtap child.
#[derive(Debug, Clone, Default)]
pub struct MacvlanSpec {
    pub name: String,
    /// ifindex of the parent, in the namespace of the handle that creates the link.
    pub parent: u32,
    /// true = macvtap, false = macvlan.
    pub tap: bool,
    /// None = kernel default (vepa).
    pub mode: Option<Mode>,
    pub nopromisc: bool,
    pub nodst: bool,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub txqlen: Option<u32>,
    pub bcqueuelen: Option<u32>,
    pub bccutoff: Option<i32>,
    /// Initial MAC list for source mode.
    pub source_macs: Vec<MacAddr>,
    /// Create the link directly inside this namespace (IFLA_NET_NS_FD); the
    /// parent stays where it is.
    pub netns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    pub up: bool,
}

/// What the kernel reports about a macvlan/macvtap child.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MacvlanInfo {
    pub tap: bool,
    pub mode: Mode,
    pub nopromisc: bool,
    pub nodst: bool,
    pub bcqueuelen: Option<u32>,
    pub bcqueuelen_used: Option<u32>,
    pub bccutoff: Option<i32>,
    pub source_macs: Vec<MacAddr>,
}
