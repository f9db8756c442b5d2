//! Allocation against etcd.
//!
//! Safety comes from one rule: an address is taken by a transaction that compares its key's
//! create revision with 0, in the same transaction as the attachment index key (also compared
//! with 0). Blocks and the local hint only choose good candidates; a stale hint costs a retry,
//! never a duplicate. A transaction whose reply was lost may have committed, so every retry
//! starts from the attachment key: the failure branch of the allocation reads it back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::etcd::{Client, Compare, EtcdError, Kv, Op};
use crate::hint::{HintError, HintFile};
use crate::pool::{Keys, Range};

/// Allocation attempts before giving up (each is one transaction).
const MAX_ATTEMPTS: u32 = 200;
/// Blind guesses (no blocks) before reading the whole pool.
const BLIND_GUESSES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step}: {source}")]
    Etcd {
        step: &'static str,
        #[source]
        source: EtcdError,
    },
    #[error("no free address left in range {range}")]
    Exhausted { range: String },
    #[error("no address recorded for container {cid} interface {ifname}")]
    NotFound { cid: String, ifname: String },
    #[error("address {ip} is recorded for {owner}, not for container {cid} interface {ifname}")]
    Mismatch {
        ip: String,
        owner: String,
        cid: String,
        ifname: String,
    },
    #[error("node hint: {0}")]
    Hint(#[from] HintError),
    #[error("unreadable record {key}: {msg}")]
    Corrupt { key: String, msg: String },
    #[error("gave up after {0} contended attempts")]
    Contended(u32),
    #[error("timed out after {0:?} (etcd reachable but the operation did not finish)")]
    Timeout(Duration),
}

impl Error {
    /// Whether etcd could not be reached in time (CNI code 11).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Etcd {
                source: EtcdError::Unavailable { .. },
                ..
            } | Error::Timeout(_)
                | Error::Hint(HintError::Busy { .. })
        )
    }
}

fn etcd(step: &'static str) -> impl FnOnce(EtcdError) -> Error {
    move |source| Error::Etcd { step, source }
}

/// Value of `ips/<range>/<ip>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub node: String,
    /// Unix seconds.
    pub time: u64,
}

/// Value of `attachments/<cid>/<ifname>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub node: String,
    pub time: u64,
    pub ips: Vec<IpNet>,
}

/// Value of `blocks/<range>/<index>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub node: String,
    pub size: u64,
    pub time: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn decode<T: for<'de> Deserialize<'de>>(kv: &Kv) -> Result<T, Error> {
    serde_json::from_slice(&kv.value).map_err(|e| Error::Corrupt {
        key: kv.key_str(),
        msg: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our record types always serialize.
    serde_json::to_vec(v).unwrap_or_default()
}

/// One address chosen for one range, maybe inside a held block.
#[derive(Debug, Clone)]
struct Candidate {
    range: usize,
    ip: IpAddr,
    /// (block index, create revision) when taken from a held block.
    block: Option<(u64, i64)>,
}

enum Outcome {
    Done(Vec<IpNet>),
    Exists(Attachment),
    /// These candidates are taken by someone else / their blocks are gone; try again.
    Retry {
        taken: Vec<usize>,
        blocks_gone: Vec<usize>,
    },
}

/// What etcd holds for one range, read at one revision.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    /// Used offsets: inside this node's blocks, or the whole range once borrowing.
    used: HashSet<u128>,
    /// block index → (owner, create revision)
    blocks: HashMap<u64, (String, i64)>,
}

/// Results of a GC pass.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub attachments: usize,
    pub records: usize,
    pub blocks: usize,
}

/// Pool usage for `macvnet ipam show`.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub network: String,
    pub prefix: String,
    pub ranges: Vec<RangeUsage>,
    pub nodes: Vec<NodeUsage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeUsage {
    pub range: String,
    pub first: IpAddr,
    pub last: IpAddr,
    pub usable: u128,
    pub used: u64,
    pub free: u128,
    pub block_size: Option<u64>,
    pub blocks_total: Option<u64>,
    pub blocks_claimed: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeUsage {
    pub node: String,
    pub used: u64,
    pub blocks: u64,
    pub attachments: u64,
}

/// The allocator for one network configuration.
#[derive(Debug, Clone)]
pub struct Ipam {
    pub cfg: Config,
    client: Client,
    keys: Keys,
    hint: HintFile,
}

impl Ipam {
    pub fn new(cfg: Config) -> Result<Self, Error> {
        let client = Client::new(&cfg.etcd).map_err(etcd("connecting"))?;
        Ok(Self::with_client(cfg, client))
    }

    /// Share one client (and its connections) between allocators, as tests and benches do.
    pub fn with_client(cfg: Config, client: Client) -> Self {
        let keys = Keys::new(&cfg.prefix, &cfg.network);
        let hint = HintFile::new(&cfg.data_dir, &cfg.network, &cfg.node);
        Self {
            cfg,
            client,
            keys,
            hint,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.cfg.timeout
    }

    fn range(&self, i: usize) -> Option<&Range> {
        self.cfg.pool.ranges.get(i)
    }

    /// ADD: the addresses of (cid, ifname), allocating them if none are recorded.
    pub fn add(&self, cid: &str, ifname: &str) -> Result<Vec<IpNet>, Error> {
        let deadline = self.deadline();
        match self.cfg.block_size {
            None => self.add_direct(cid, ifname, deadline),
            Some(size) => self.add_blocks(cid, ifname, size, deadline),
        }
    }

    /// Without blocks: guess random addresses and commit; the transaction's failure branch
    /// says which were taken (and returns the attachment if it exists already). After a few
    /// misses (a crowded pool) read every used address and choose among the free ones.
    fn add_direct(&self, cid: &str, ifname: &str, deadline: Instant) -> Result<Vec<IpNet>, Error> {
        let ranges = &self.cfg.pool.ranges;
        let mut used: Vec<HashSet<u128>> = vec![HashSet::new(); ranges.len()];
        let mut complete = false;
        let mut misses = 0u32;
        for _ in 0..MAX_ATTEMPTS {
            self.check_deadline(deadline)?;
            if !complete && misses >= BLIND_GUESSES {
                for (r, u) in ranges.iter().zip(used.iter_mut()) {
                    u.extend(self.read_used(r, deadline)?);
                }
                complete = true;
            }
            let mut cands = Vec::new();
            for (i, r) in ranges.iter().enumerate() {
                let u = used.get(i).cloned().unwrap_or_default();
                let Some(off) = random_free(r, &u) else {
                    if !complete {
                        misses = BLIND_GUESSES;
                        break;
                    }
                    return match self.existing(cid, ifname, deadline)? {
                        Some(a) => Ok(a.ips),
                        None => Err(Error::Exhausted {
                            range: r.net.to_string(),
                        }),
                    };
                };
                cands.push(Candidate {
                    range: i,
                    ip: r.addr(off),
                    block: None,
                });
            }
            if cands.len() < ranges.len() {
                continue;
            }
            match self.commit(cid, ifname, &cands, deadline)? {
                Outcome::Done(ips) => return Ok(ips),
                Outcome::Exists(a) => return Ok(a.ips),
                Outcome::Retry { taken, .. } => {
                    misses += 1;
                    for c in taken.iter().filter_map(|i| cands.get(*i)) {
                        if let (Some(r), Some(u)) = (self.range(c.range), used.get_mut(c.range)) {
                            if let Some(off) = r.offset(c.ip) {
                                u.insert(off);
                            }
                        }
                    }
                }
            }
        }
        Err(Error::Contended(MAX_ATTEMPTS))
    }

    fn check_deadline(&self, deadline: Instant) -> Result<(), Error> {
        if Instant::now() >= deadline {
            return Err(Error::Timeout(self.cfg.timeout));
        }
        Ok(())
    }

    fn used_offsets(&self, r: &Range, kvs: &[Kv]) -> HashSet<u128> {
        kvs.iter()
            .filter_map(|kv| self.keys.parse_ip(r, &kv.key_str()))
            .filter_map(|ip| r.offset(ip))
            .collect()
    }

    /// The allocation transaction: addresses and the attachment index, all-or-nothing.
    fn commit(
        &self,
        cid: &str,
        ifname: &str,
        cands: &[Candidate],
        deadline: Instant,
    ) -> Result<Outcome, Error> {
        let att_key = self.keys.attachment(cid, ifname);
        let t = now();
        let rec = encode(&Record {
            container_id: cid.to_string(),
            ifname: ifname.to_string(),
            node: self.cfg.node.clone(),
            time: t,
        });
        let mut ips = Vec::new();
        let mut ip_keys = Vec::new();
        let mut block_keys = Vec::new();
        for c in cands {
            let Some(r) = self.range(c.range) else {
                continue;
            };
            ips.push(r.with_prefix(c.ip));
            ip_keys.push(self.keys.ip(r, c.ip));
            block_keys.push(c.block.map(|(idx, rev)| (self.keys.block(r, idx), rev)));
        }
        let att = Attachment {
            container_id: cid.to_string(),
            ifname: ifname.to_string(),
            node: self.cfg.node.clone(),
            time: t,
            ips: ips.clone(),
        };
        let mut cmp = vec![Compare::absent(&att_key)];
        cmp.extend(ip_keys.iter().map(|k| Compare::absent(k)));
        cmp.extend(
            block_keys
                .iter()
                .flatten()
                .map(|(k, rev)| Compare::create_eq(k, *rev)),
        );
        let mut success: Vec<Op> = ip_keys.iter().map(|k| Op::put(k, rec.clone())).collect();
        success.push(Op::put(&att_key, encode(&att)));
        let mut failure = vec![Op::get(&att_key)];
        failure.extend(ip_keys.iter().map(|k| Op::get(k)));
        failure.extend(block_keys.iter().flatten().map(|(k, _)| Op::get(k)));
        let reply = self
            .client
            .txn(&cmp, &success, &failure, deadline)
            .map_err(etcd("allocating"))?;
        if reply.succeeded {
            return Ok(Outcome::Done(ips));
        }
        let mut ranges = reply.ranges.into_iter();
        if let Some(kv) = ranges.next().and_then(|r| r.into_iter().next()) {
            return Ok(Outcome::Exists(decode(&kv)?));
        }
        let mut taken = Vec::new();
        for i in 0..ip_keys.len() {
            if ranges.next().is_some_and(|r| !r.is_empty()) {
                taken.push(i);
            }
        }
        let mut blocks_gone = Vec::new();
        for (i, b) in block_keys.iter().enumerate() {
            if let Some((_, rev)) = b {
                let kv = ranges.next().and_then(|r| r.into_iter().next());
                if kv.map(|kv| kv.create_revision) != Some(*rev) {
                    blocks_gone.push(i);
                }
            }
        }
        Ok(Outcome::Retry { taken, blocks_gone })
    }

    /// With blocks: candidates come from this node's blocks (hint), so the common case is a
    /// single transaction. Blocks are claimed when the node's are full; when every block is
    /// claimed, addresses are borrowed anywhere in the range.
    fn add_blocks(
        &self,
        cid: &str,
        ifname: &str,
        size: u64,
        deadline: Instant,
    ) -> Result<Vec<IpNet>, Error> {
        let nranges = self.cfg.pool.ranges.len();
        let mut snapshot: Option<Vec<Snapshot>> = None;
        let mut borrow = vec![false; nranges];
        for _ in 0..MAX_ATTEMPTS {
            self.check_deadline(deadline)?;
            let picked = self.pick_from_hint(size, &borrow)?;
            let cands = match picked {
                Ok(c) => c,
                Err(short) => {
                    // The hint has no free address for range `short`. One local worker at a
                    // time claims (the others then find the new block in the hint).
                    let _claiming = self.hint.lock_claims(deadline)?;
                    if self.hint_has_free(short, size)? {
                        continue;
                    }
                    if snapshot.is_none() {
                        snapshot = Some(self.resync(size, deadline)?);
                        if self.hint_has_free(short, size)? {
                            continue;
                        }
                    }
                    let Some(s) = snapshot.as_mut().and_then(|s| s.get_mut(short)) else {
                        return Err(Error::Contended(0));
                    };
                    if !self.claim_block(short, size, s, deadline)? {
                        // Every block is claimed: borrow free addresses anywhere.
                        borrow[short] = true;
                        if let Some(r) = self.range(short) {
                            s.used = self.read_used(r, deadline)?;
                        }
                    }
                    continue;
                }
            };
            // Borrowed candidates (no block) for ranges whose blocks are all claimed.
            let mut cands = cands;
            for (i, b) in borrow.iter().enumerate() {
                if !*b {
                    continue;
                }
                let (Some(r), Some(snap)) =
                    (self.range(i), snapshot.as_ref().and_then(|s| s.get(i)))
                else {
                    continue;
                };
                let Some(off) = random_free(r, &snap.used) else {
                    return match self.existing(cid, ifname, deadline)? {
                        Some(a) => Ok(a.ips),
                        None => Err(Error::Exhausted {
                            range: r.net.to_string(),
                        }),
                    };
                };
                cands.push(Candidate {
                    range: i,
                    ip: r.addr(off),
                    block: None,
                });
            }
            cands.sort_by_key(|c| c.range);
            let outcome = self.commit(cid, ifname, &cands, deadline);
            match outcome {
                Ok(Outcome::Done(ips)) => return Ok(ips),
                Ok(Outcome::Exists(a)) => {
                    self.unmark(size, &cands)?;
                    return Ok(a.ips);
                }
                Ok(Outcome::Retry { taken, blocks_gone }) => {
                    // Taken addresses stay marked: they are used. Lost blocks leave the hint.
                    if let Some(snap) = snapshot.as_mut() {
                        for c in taken.iter().filter_map(|i| cands.get(*i)) {
                            if let (Some(r), Some(s)) = (self.range(c.range), snap.get_mut(c.range))
                            {
                                if let Some(off) = r.offset(c.ip) {
                                    s.used.insert(off);
                                }
                            }
                        }
                    }
                    let gone: Vec<&Candidate> =
                        blocks_gone.iter().filter_map(|i| cands.get(*i)).collect();
                    if !gone.is_empty() {
                        self.hint.update(|h| {
                            for c in &gone {
                                if let (Some(r), Some((idx, _))) = (self.range(c.range), c.block) {
                                    h.remove(&r.id, idx);
                                }
                            }
                        })?;
                    }
                    // Unmark the candidates that were neither taken nor lost with a block.
                    let free: Vec<Candidate> = cands
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !taken.contains(i) && !blocks_gone.contains(i))
                        .map(|(_, c)| c.clone())
                        .collect();
                    self.unmark(size, &free)?;
                }
                Err(e) => {
                    // The outcome is unknown when etcd went away: the marks stay (a resync
                    // clears them); a definite refusal frees them.
                    if !e.is_unavailable() {
                        let _ = self.unmark(size, &cands);
                    }
                    return Err(e);
                }
            }
        }
        Err(Error::Contended(MAX_ATTEMPTS))
    }

    /// The attachment record of (cid, ifname), if any.
    pub fn existing(
        &self,
        cid: &str,
        ifname: &str,
        deadline: Instant,
    ) -> Result<Option<Attachment>, Error> {
        let kvs = self
            .client
            .read(&[Op::get(&self.keys.attachment(cid, ifname))], deadline)
            .map_err(etcd("reading the attachment"))?;
        kvs.first().and_then(|r| r.first()).map(decode).transpose()
    }

    /// One candidate per (non-borrowing) range from held blocks, marked used in the hint;
    /// `Err(range)` when a range has none (nothing is marked then).
    fn pick_from_hint(
        &self,
        size: u64,
        borrow: &[bool],
    ) -> Result<Result<Vec<Candidate>, usize>, Error> {
        let ranges = &self.cfg.pool.ranges;
        Ok(self.hint.update(|h| {
            let mut picked: Vec<(usize, usize, u64)> = Vec::new(); // (range, hint block pos, in-block offset)
            for (ri, r) in ranges.iter().enumerate() {
                if borrow.get(ri).copied().unwrap_or(false) {
                    continue;
                }
                let found = free_slot(h, r, size);
                match found {
                    Some((bi, k)) => picked.push((ri, bi, k)),
                    None => return Err(ri),
                }
            }
            let mut out = Vec::new();
            for (ri, bi, k) in picked {
                let (Some(r), Some(b)) = (ranges.get(ri), h.blocks.get_mut(bi)) else {
                    continue;
                };
                b.used.insert(k);
                let (lo, _) = r.block_offsets(size, b.index);
                out.push(Candidate {
                    range: ri,
                    ip: r.addr(lo + u128::from(k)),
                    block: Some((b.index, b.rev)),
                });
            }
            Ok(out)
        })?)
    }

    fn hint_has_free(&self, ri: usize, size: u64) -> Result<bool, Error> {
        let Some(r) = self.range(ri) else {
            return Ok(false);
        };
        Ok(self.hint.update(|h| free_slot(h, r, size).is_some())?)
    }

    /// Every used offset of range `r` (a read of all its address keys).
    fn read_used(&self, r: &Range, deadline: Instant) -> Result<HashSet<u128>, Error> {
        let kvs = self
            .client
            .read(&[Op::get_prefix(&self.keys.ips_prefix(r), true)], deadline)
            .map_err(etcd("reading the pool"))?;
        Ok(self.used_offsets(r, kvs.first().map(Vec::as_slice).unwrap_or(&[])))
    }

    fn unmark(&self, size: u64, cands: &[Candidate]) -> Result<(), Error> {
        if cands.iter().all(|c| c.block.is_none()) {
            return Ok(());
        }
        self.hint.update(|h| {
            for c in cands {
                let (Some(r), Some((idx, _))) = (self.range(c.range), c.block) else {
                    continue;
                };
                let (lo, _) = r.block_offsets(size, idx);
                if let (Some(b), Some(off)) = (h.block_mut(&r.id, idx), r.offset(c.ip)) {
                    b.used.remove(&u64::try_from(off - lo).unwrap_or(u64::MAX));
                }
            }
        })?;
        Ok(())
    }

    /// Read blocks and used addresses of every range at one revision and rebuild the hint
    /// from them (this node's blocks, with what is really used in them).
    fn resync(&self, size: u64, deadline: Instant) -> Result<Vec<Snapshot>, Error> {
        let ranges = &self.cfg.pool.ranges;
        let ops: Vec<Op> = ranges
            .iter()
            .map(|r| Op::get_prefix(&self.keys.blocks_prefix(r), false))
            .collect();
        let reads = self
            .client
            .read(&ops, deadline)
            .map_err(etcd("reading blocks"))?;
        let mut snaps = Vec::new();
        let mut spans = Vec::new();
        for (ri, (r, blocks)) in ranges.iter().zip(reads).enumerate() {
            let mut s = Snapshot::default();
            for kv in &blocks {
                let Some(idx) = self.keys.parse_block(r, &kv.key_str()) else {
                    continue;
                };
                let owner = decode::<BlockRecord>(kv)
                    .map(|b| b.node)
                    .unwrap_or_default();
                if owner == self.cfg.node {
                    spans.push((ri, idx));
                }
                s.blocks.insert(idx, (owner, kv.create_revision));
            }
            snaps.push(s);
        }
        // What is used inside our own blocks (only those: the pool may be large).
        if !spans.is_empty() {
            let ops: Vec<Op> = spans
                .iter()
                .filter_map(|(ri, idx)| {
                    let r = self.range(*ri)?;
                    let (a, b) = self.keys.block_span(r, size, *idx);
                    Some(Op::get_span(&a, &b, true))
                })
                .collect();
            let reads = self
                .client
                .read(&ops, deadline)
                .map_err(etcd("reading block contents"))?;
            for ((ri, _), kvs) in spans.iter().zip(reads) {
                if let (Some(r), Some(s)) = (self.range(*ri), snaps.get_mut(*ri)) {
                    s.used.extend(self.used_offsets(r, &kvs));
                }
            }
        }
        self.hint.update(|h| {
            for (r, s) in ranges.iter().zip(&snaps) {
                // Marks come from etcd alone: this drops marks of killed ADDs. An in-flight
                // ADD of another local process may see its address picked twice; the
                // address key's compare lets only one of them have it.
                let mut kept = Vec::new();
                for (idx, (owner, rev)) in &s.blocks {
                    if owner != &self.cfg.node {
                        continue;
                    }
                    let (lo, hi) = r.block_offsets(size, *idx);
                    let used: std::collections::BTreeSet<u64> = s
                        .used
                        .iter()
                        .filter(|o| (lo..=hi).contains(*o))
                        .map(|off| u64::try_from(off - lo).unwrap_or(u64::MAX))
                        .collect();
                    kept.push(crate::hint::HintBlock {
                        range: r.id.clone(),
                        index: *idx,
                        rev: *rev,
                        used,
                    });
                }
                h.blocks.retain(|b| b.range != r.id);
                h.blocks.extend(kept);
            }
        })?;
        Ok(snaps)
    }

    /// Claim a free block of range `ri` for this node; false when every block is claimed.
    fn claim_block(
        &self,
        ri: usize,
        size: u64,
        snap: &mut Snapshot,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let Some(r) = self.range(ri) else {
            return Ok(false);
        };
        let total = r.blocks(size);
        let mut rng = rand::thread_rng();
        for _ in 0..16 {
            self.check_deadline(deadline)?;
            // Prefer blocks with nothing borrowed in them; random to spread the nodes.
            let free: Vec<u64> = if total <= 1 << 16 {
                (0..total)
                    .filter(|i| !snap.blocks.contains_key(i))
                    .collect()
            } else {
                (0..64)
                    .map(|_| rng.gen_range(0..total))
                    .filter(|i| !snap.blocks.contains_key(i))
                    .collect()
            };
            let empty: Vec<u64> = free
                .iter()
                .copied()
                .filter(|i| {
                    let (lo, hi) = r.block_offsets(size, *i);
                    !snap.used.iter().any(|o| (lo..=hi).contains(o))
                })
                .collect();
            let choice = if empty.is_empty() { &free } else { &empty };
            if choice.is_empty() {
                return Ok(false);
            }
            let idx = choice
                .get(rng.gen_range(0..choice.len()))
                .copied()
                .unwrap_or(0);
            let key = self.keys.block(r, idx);
            let (start, end) = self.keys.block_span(r, size, idx);
            let rec = BlockRecord {
                node: self.cfg.node.clone(),
                size,
                time: now(),
            };
            let reply = self
                .client
                .txn(
                    &[Compare::absent(&key)],
                    &[
                        Op::put(&key, encode(&rec)),
                        Op::get_span(&start, &end, true),
                    ],
                    &[Op::get(&key)],
                    deadline,
                )
                .map_err(etcd("claiming a block"))?;
            if reply.succeeded {
                let (lo, _) = r.block_offsets(size, idx);
                let used_in = reply.ranges.first().cloned().unwrap_or_default();
                let used: std::collections::BTreeSet<u64> = self
                    .used_offsets(r, &used_in)
                    .into_iter()
                    .map(|o| u64::try_from(o - lo).unwrap_or(u64::MAX))
                    .collect();
                snap.blocks
                    .insert(idx, (self.cfg.node.clone(), reply.revision));
                self.hint.update(|h| {
                    h.remove(&r.id, idx);
                    h.blocks.push(crate::hint::HintBlock {
                        range: r.id.clone(),
                        index: idx,
                        rev: reply.revision,
                        used,
                    });
                })?;
                tracing::debug!(node = %self.cfg.node, block = idx, range = %r.net, "claimed block");
                return Ok(true);
            }
            let owner = reply
                .ranges
                .first()
                .and_then(|v| v.first())
                .map(|kv| {
                    (
                        decode::<BlockRecord>(kv)
                            .map(|b| b.node)
                            .unwrap_or_default(),
                        kv.create_revision,
                    )
                })
                .unwrap_or_default();
            if owner.0 == self.cfg.node {
                // Ours already: an earlier claim committed but its reply was lost (or another
                // local process claimed it). Adopt it; the address compares keep it safe.
                let rev = owner.1;
                snap.blocks.insert(idx, owner);
                self.hint.update(|h| {
                    if h.block_mut(&r.id, idx).is_none_or(|b| b.rev != rev) {
                        h.remove(&r.id, idx);
                        h.blocks.push(crate::hint::HintBlock {
                            range: r.id.clone(),
                            index: idx,
                            rev,
                            used: Default::default(),
                        });
                    }
                })?;
                return Ok(true);
            }
            snap.blocks.insert(idx, owner);
        }
        // Lost every race for a block; the caller retries (bounded by attempts and deadline).
        Ok(true)
    }

    /// DEL: release the addresses of (cid, ifname). Absent is success.
    pub fn del(&self, cid: &str, ifname: &str) -> Result<(), Error> {
        let deadline = self.deadline();
        let key = self.keys.attachment(cid, ifname);
        for _ in 0..MAX_ATTEMPTS {
            let kvs = self
                .client
                .read(&[Op::get(&key)], deadline)
                .map_err(etcd("reading the attachment"))?;
            let Some(kv) = kvs.into_iter().next().and_then(|r| r.into_iter().next()) else {
                return Ok(());
            };
            let att: Attachment = decode(&kv)?;
            if self.release(&kv, &att, deadline)? {
                return Ok(());
            }
        }
        Err(Error::Contended(MAX_ATTEMPTS))
    }

    /// Delete an attachment and its address records if unchanged since read; then hand
    /// back blocks of this node left empty. False when the attachment changed meanwhile.
    fn release(&self, kv: &Kv, att: &Attachment, deadline: Instant) -> Result<bool, Error> {
        let key = kv.key_str();
        let mut ops = vec![Op::delete(&key)];
        let mut located = Vec::new();
        for ip in &att.ips {
            if let Some((ri, r)) = self.cfg.pool.find(ip.addr()) {
                ops.push(Op::delete(&self.keys.ip(r, ip.addr())));
                located.push((ri, ip.addr()));
            }
        }
        let reply = self
            .client
            .txn(
                &[Compare::mod_eq(&key, kv.mod_revision)],
                &ops,
                &[],
                deadline,
            )
            .map_err(etcd("releasing"))?;
        if !reply.succeeded {
            return Ok(false);
        }
        if let Some(size) = self.cfg.block_size {
            if att.node == self.cfg.node {
                self.after_release(size, &located, deadline)?;
            }
        }
        Ok(true)
    }

    /// Unmark released addresses in the hint and give back blocks that became empty.
    fn after_release(
        &self,
        size: u64,
        released: &[(usize, IpAddr)],
        deadline: Instant,
    ) -> Result<(), Error> {
        let empty = self.hint.update(|h| {
            let mut empty = Vec::new();
            for (ri, ip) in released {
                let Some(r) = self.range(*ri) else { continue };
                let Some(off) = r.offset(*ip) else { continue };
                let idx = r.block_of(size, off);
                let (lo, _) = r.block_offsets(size, idx);
                if let Some(b) = h.block_mut(&r.id, idx) {
                    b.used.remove(&u64::try_from(off - lo).unwrap_or(u64::MAX));
                    if b.used.is_empty() {
                        empty.push((*ri, idx, b.rev));
                    }
                }
            }
            empty
        })?;
        for (ri, idx, rev) in empty {
            self.give_back(ri, size, idx, rev, deadline)?;
        }
        Ok(())
    }

    /// Delete a block key of ours if no address lies in its span (checked by etcd).
    fn give_back(
        &self,
        ri: usize,
        size: u64,
        idx: u64,
        rev: i64,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let Some(r) = self.range(ri) else {
            return Ok(false);
        };
        let key = self.keys.block(r, idx);
        let (start, end) = self.keys.block_span(r, size, idx);
        let reply = self
            .client
            .txn(
                &[
                    Compare::create_eq(&key, rev),
                    Compare::span_empty(&start, &end),
                ],
                &[Op::delete(&key)],
                &[Op::get(&key)],
                deadline,
            )
            .map_err(etcd("giving back a block"))?;
        let gone = reply.succeeded
            || reply
                .ranges
                .first()
                .and_then(|v| v.first())
                .map(|kv| kv.create_revision)
                != Some(rev);
        if gone {
            self.hint.update(|h| {
                if h.block_mut(&r.id, idx).is_some_and(|b| b.rev == rev) {
                    h.remove(&r.id, idx);
                }
            })?;
        }
        if reply.succeeded {
            tracing::debug!(node = %self.cfg.node, block = idx, range = %r.net, "gave back block");
        }
        Ok(reply.succeeded)
    }

    /// CHECK: (cid, ifname) holds addresses and every record names it.
    pub fn check(&self, cid: &str, ifname: &str) -> Result<Vec<IpNet>, Error> {
        let deadline = self.deadline();
        let Some(att) = self.existing(cid, ifname, deadline)? else {
            return Err(Error::NotFound {
                cid: cid.into(),
                ifname: ifname.into(),
            });
        };
        let mut ops = Vec::new();
        for ip in &att.ips {
            if let Some((_, r)) = self.cfg.pool.find(ip.addr()) {
                ops.push(Op::get(&self.keys.ip(r, ip.addr())));
            }
        }
        let reads = self
            .client
            .read(&ops, deadline)
            .map_err(etcd("reading records"))?;
        for (ip, kvs) in att.ips.iter().zip(reads) {
            let Some(kv) = kvs.first() else {
                return Err(Error::NotFound {
                    cid: cid.into(),
                    ifname: ifname.into(),
                });
            };
            let rec: Record = decode(kv)?;
            if rec.container_id != cid || rec.ifname != ifname {
                return Err(Error::Mismatch {
                    ip: ip.to_string(),
                    owner: format!("{}/{}", rec.container_id, rec.ifname),
                    cid: cid.into(),
                    ifname: ifname.into(),
                });
            }
        }
        Ok(att.ips)
    }

    /// STATUS: etcd answers.
    pub fn status(&self) -> Result<(), Error> {
        self.client
            .ping(self.deadline())
            .map_err(etcd("reaching etcd"))
    }

    /// CNI GC: release this node's attachments not in `valid`, orphan records of this node,
    /// and this node's empty blocks. Other nodes' records are never touched.
    pub fn gc(&self, valid: &[(String, String)]) -> Result<GcReport, Error> {
        let valid: HashSet<(&str, &str)> = valid
            .iter()
            .map(|(c, i)| (c.as_str(), i.as_str()))
            .collect();
        let node = self.cfg.node.clone();
        self.collect(&node, |a| !valid.contains(&(a.0, a.1)), false)
    }

    /// `macvnet ipam gc --node N`: only what is certainly garbage: records of N without an
    /// attachment and N's empty blocks (N may be alive).
    pub fn gc_idle(&self, node: &str) -> Result<GcReport, Error> {
        self.collect(node, |_| false, false)
    }

    /// `macvnet ipam gc --node N --dead`: N is gone for good; release all it holds.
    pub fn gc_dead(&self, node: &str) -> Result<GcReport, Error> {
        self.collect(node, |_| true, true)
    }

    /// Release `node`'s attachments for which `doomed(cid, ifname)`, then records of `node`
    /// whose attachment is missing, then `node`'s blocks (all when `all_blocks`, else the
    /// empty ones).
    fn collect(
        &self,
        node: &str,
        doomed: impl Fn((&str, &str)) -> bool,
        all_blocks: bool,
    ) -> Result<GcReport, Error> {
        let deadline = self.deadline();
        let mut report = GcReport::default();
        let reads = self
            .client
            .read(
                &[
                    Op::get_prefix(&self.keys.attachments(), false),
                    Op::get_prefix(&self.keys.all_ips(), false),
                    Op::get_prefix(&self.keys.all_blocks(), false),
                ],
                deadline,
            )
            .map_err(etcd("listing the pool"))?;
        let mut it = reads.into_iter();
        let atts = it.next().unwrap_or_default();
        let ips = it.next().unwrap_or_default();
        let blocks = it.next().unwrap_or_default();
        for kv in &atts {
            let Ok(att) = decode::<Attachment>(kv) else {
                tracing::warn!(key = %kv.key_str(), "unreadable attachment left alone");
                continue;
            };
            if att.node != node || !doomed((&att.container_id, &att.ifname)) {
                continue;
            }
            if self.release(kv, &att, deadline)? {
                report.attachments += 1;
                report.records += att.ips.len();
            }
        }
        // Records without their attachment (never written by us, but a hand edit or an
        // older version could leave them). Compared on the attachment's absence.
        for kv in &ips {
            let Ok(rec) = decode::<Record>(kv) else {
                continue;
            };
            if rec.node != node {
                continue;
            }
            let att_key = self.keys.attachment(&rec.container_id, &rec.ifname);
            let key = kv.key_str();
            let reply = self
                .client
                .txn(
                    &[
                        Compare::mod_eq(&key, kv.mod_revision),
                        Compare::absent(&att_key),
                    ],
                    &[Op::delete(&key)],
                    &[],
                    deadline,
                )
                .map_err(etcd("deleting an orphan record"))?;
            if reply.succeeded {
                report.records += 1;
            }
        }
        for kv in &blocks {
            let Ok(b) = decode::<BlockRecord>(kv) else {
                continue;
            };
            if b.node != node {
                continue;
            }
            let key = kv.key_str();
            let Some((ri, idx)) = self
                .cfg
                .pool
                .ranges
                .iter()
                .enumerate()
                .find_map(|(ri, r)| self.keys.parse_block(r, &key).map(|i| (ri, i)))
            else {
                continue;
            };
            let released = if all_blocks {
                self.client
                    .txn(
                        &[Compare::create_eq(&key, kv.create_revision)],
                        &[Op::delete(&key)],
                        &[],
                        deadline,
                    )
                    .map_err(etcd("deleting a block"))?
                    .succeeded
            } else {
                self.give_back(ri, b.size, idx, kv.create_revision, deadline)?
            };
            if released {
                report.blocks += 1;
            }
        }
        if node == self.cfg.node && self.cfg.block_size.is_some() {
            // Our hint may hold marks of killed ADDs; the next ADD rebuilds it from etcd.
            self.hint.update(|h| h.blocks.clear())?;
        }
        Ok(report)
    }

    /// Pool usage per range and per node.
    pub fn usage(&self) -> Result<Usage, Error> {
        let deadline = self.deadline();
        let reads = self
            .client
            .read(
                &[
                    Op::get_prefix(&self.keys.all_ips(), false),
                    Op::get_prefix(&self.keys.all_blocks(), false),
                    Op::get_prefix(&self.keys.attachments(), false),
                ],
                deadline,
            )
            .map_err(etcd("listing the pool"))?;
        let mut it = reads.into_iter();
        let ips = it.next().unwrap_or_default();
        let blocks = it.next().unwrap_or_default();
        let atts = it.next().unwrap_or_default();
        let mut nodes: BTreeMap<String, NodeUsage> = BTreeMap::new();
        let mut ranges = Vec::new();
        for r in &self.cfg.pool.ranges {
            let prefix = self.keys.ips_prefix(r);
            let mut used = 0u64;
            for kv in ips
                .iter()
                .filter(|kv| kv.key.starts_with(prefix.as_bytes()))
            {
                used += 1;
                let node = decode::<Record>(kv).map(|x| x.node).unwrap_or_default();
                let n = nodes.entry(node.clone()).or_default();
                n.node = node;
                n.used += 1;
            }
            let bprefix = self.keys.blocks_prefix(r);
            let mut claimed = 0u64;
            for kv in blocks
                .iter()
                .filter(|kv| kv.key.starts_with(bprefix.as_bytes()))
            {
                claimed += 1;
                let node = decode::<BlockRecord>(kv)
                    .map(|x| x.node)
                    .unwrap_or_default();
                let n = nodes.entry(node.clone()).or_default();
                n.node = node;
                n.blocks += 1;
            }
            let usable = r.usable();
            ranges.push(RangeUsage {
                range: r.net.to_string(),
                first: r.addr(0),
                last: r.addr(r.span() - 1),
                usable,
                used,
                free: usable.saturating_sub(u128::from(used)),
                block_size: self.cfg.block_size,
                blocks_total: self.cfg.block_size.map(|s| r.blocks(s)),
                blocks_claimed: claimed,
            });
        }
        for kv in &atts {
            let node = decode::<Attachment>(kv).map(|x| x.node).unwrap_or_default();
            let n = nodes.entry(node.clone()).or_default();
            n.node = node;
            n.attachments += 1;
        }
        Ok(Usage {
            network: self.cfg.network.clone(),
            prefix: self.keys.root.clone(),
            ranges,
            nodes: nodes.into_values().collect(),
        })
    }

    /// Every record under this network (tests and `show --records`).
    pub fn records(&self) -> Result<Vec<(IpAddr, Record)>, Error> {
        let kvs = self
            .client
            .get_prefix(&self.keys.all_ips(), self.deadline())
            .map_err(etcd("listing records"))?;
        let mut out = Vec::new();
        for kv in &kvs {
            let key = kv.key_str();
            let Some(ip) = self
                .cfg
                .pool
                .ranges
                .iter()
                .find_map(|r| self.keys.parse_ip(r, &key))
            else {
                continue;
            };
            out.push((ip, decode(kv)?));
        }
        Ok(out)
    }
}

/// The first free, non-reserved slot (hint block position, offset in block) of range `r`.
fn free_slot(h: &crate::hint::Hint, r: &Range, size: u64) -> Option<(usize, u64)> {
    let mut order: Vec<usize> = (0..h.blocks.len())
        .filter(|&i| h.blocks.get(i).is_some_and(|b| b.range == r.id))
        .collect();
    order.sort_by_key(|&i| h.blocks.get(i).map(|b| b.index));
    for bi in order {
        let Some(b) = h.blocks.get(bi) else { continue };
        let (lo, hi) = r.block_offsets(size, b.index);
        let n = u64::try_from(hi - lo + 1).unwrap_or(u64::MAX);
        for k in 0..n {
            if !b.used.contains(&k) && !r.reserved(r.addr(lo + u128::from(k))) {
                return Some((bi, k));
            }
        }
    }
    None
}

/// A random free, non-reserved offset of `r` (random start, then the next free one).
fn random_free(r: &Range, used: &HashSet<u128>) -> Option<u128> {
    let span = r.span();
    let start = rand::thread_rng().gen_range(0..span);
    // Bounded walk: enough for every address of small ranges, plenty for large ones.
    let steps = span.min(1 << 22);
    for k in 0..steps {
        let off = (start + k) % span;
        if !used.contains(&off) && !r.reserved(r.addr(off)) {
            return Some(off);
        }
    }
    None
}
