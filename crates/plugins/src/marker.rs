//! Recognising our own plugin binaries on `CNI_PATH` without running them.
//!
//! Every binary of this crate carries an ELF note (owner "macvnet", type 1, "<plugin>
//! <version>" as description) placed by [`plugin_note!`]. Linkers put `.note.*` sections in a
//! PT_NOTE segment, so finding it needs only the ELF header, the program headers and the
//! (small) note segments: a few hundred bytes read, however large the binary. The note
//! survives copying and `strip` (it is part of a loaded segment, not a debug section).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Note owner name.
pub const NOTE_OWNER: &[u8; 8] = b"macvnet\0";
/// Note type of a plugin marker.
pub const NOTE_TYPE: u32 = 1;
/// Bytes reserved for the plugin name in the note (NUL-padded).
pub const NAME_LEN: usize = 32;

/// The in-memory layout of one ELF note: header, owner, padded description.
#[repr(C, align(4))]
pub struct Note {
    pub namesz: u32,
    pub descsz: u32,
    pub kind: u32,
    pub owner: [u8; 8],
    pub desc: [u8; NAME_LEN],
}

/// A note naming `plugin` (truncated to [`NAME_LEN`] bytes, which no plugin name reaches).
pub const fn note(plugin: &str) -> Note {
    let bytes = plugin.as_bytes();
    let mut desc = [0u8; NAME_LEN];
    let mut i = 0;
    while i < bytes.len() && i < NAME_LEN {
        desc[i] = bytes[i];
        i += 1;
    }
    Note {
        namesz: NOTE_OWNER.len() as u32,
        descsz: NAME_LEN as u32,
        kind: NOTE_TYPE,
        owner: *NOTE_OWNER,
        desc,
    }
}

/// Put the marker note "`$name` `<version>`" into the binary that invokes it (once, in
/// `main.rs` of a bin of this package, whose version is then this crate's [`VERSION`]), so
/// an IPAM binary from another release is exec'd, not replaced by our built-in code.
#[macro_export]
macro_rules! plugin_note {
    ($name:literal) => {
        #[used]
        #[link_section = ".note.macvnet"]
        static MACVNET_PLUGIN_NOTE: $crate::marker::Note =
            $crate::marker::note(concat!($name, " ", env!("CARGO_PKG_VERSION")));
    };
}

/// The version written into every note and expected when reading one.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The note text our binary `plugin` carries.
pub fn expected(plugin: &str) -> String {
    format!("{plugin} {VERSION}")
}

const PT_NOTE: u32 = 4;
/// Upper bounds so a hostile file cannot make us read much.
const MAX_PHNUM: usize = 64;
const MAX_NOTE_SEGMENT: u64 = 16 * 1024;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The plugin name in the macvnet note of the ELF file at `path`, if it has one.
/// Only 64-bit little-endian ELF is understood (what we build); anything else is `None`.
pub fn read_note(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut eh = [0u8; 64];
    file.read_exact_at(&mut eh, 0).ok()?;
    // ELFCLASS64, ELFDATA2LSB.
    if eh.get(0..4)? != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let phoff = u64_at(&eh, 0x20)?;
    let phentsize = usize::from(u16_at(&eh, 0x36)?);
    let phnum = usize::from(u16_at(&eh, 0x38)?).min(MAX_PHNUM);
    if phentsize < 56 {
        return None;
    }
    let mut ph = vec![0u8; phentsize * phnum];
    file.read_exact_at(&mut ph, phoff).ok()?;
    for entry in ph.chunks_exact(phentsize) {
        if u32_at(entry, 0)? != PT_NOTE {
            continue;
        }
        let offset = u64_at(entry, 8)?;
        let size = u64_at(entry, 32)?.min(MAX_NOTE_SEGMENT);
        let align = if u64_at(entry, 48)? == 8 { 8 } else { 4 };
        let mut seg = vec![0u8; usize::try_from(size).ok()?];
        if file.read_exact_at(&mut seg, offset).is_err() {
            continue;
        }
        if let Some(name) = find_in_segment(&seg, align) {
            return Some(name);
        }
    }
    None
}

fn pad(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

fn find_in_segment(seg: &[u8], align: usize) -> Option<String> {
    let mut off = 0usize;
    while off + 12 <= seg.len() {
        let namesz = usize::try_from(u32_at(seg, off)?).ok()?;
        let descsz = usize::try_from(u32_at(seg, off + 4)?).ok()?;
        let kind = u32_at(seg, off + 8)?;
        let name_start = off + 12;
        let desc_start = name_start.checked_add(pad(namesz, align))?;
        let next = desc_start.checked_add(pad(descsz, align))?;
        let name = seg.get(name_start..name_start + namesz)?;
        if name == NOTE_OWNER && kind == NOTE_TYPE {
            let desc = seg.get(desc_start..desc_start + descsz)?;
            let end = desc.iter().position(|b| *b == 0).unwrap_or(desc.len());
            return std::str::from_utf8(desc.get(..end)?)
                .ok()
                .map(str::to_string);
        }
        off = next;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_own_layout() {
        let n = note("host-local");
        // SAFETY: Note is repr(C) plain data without padding (4+4+4+8+32 bytes).
        let bytes: &[u8] = unsafe {
            std::slice::from_raw_parts(
                (&n as *const Note).cast::<u8>(),
                std::mem::size_of::<Note>(),
            )
        };
        assert_eq!(find_in_segment(bytes, 4).as_deref(), Some("host-local"));
        assert_eq!(find_in_segment(&bytes[..20], 4), None);
    }

    #[test]
    fn not_elf() {
        assert_eq!(read_note(Path::new("/proc/self/status")), None);
        assert_eq!(read_note(Path::new("/nonexistent")), None);
    }
}
