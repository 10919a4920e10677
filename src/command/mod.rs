//! The command table: for every Redis 7.0–7.4 command, its arity, where its keys are, its
//! flags and how the proxy routes it.
//!
//! Pure: no IO. [`classify`] looks a request up case-insensitively through a hash index
//! built at compile time, checks the arity, finds the key positions and decides the route,
//! all without heap allocation for a known command; only errors allocate.
//!
//! The table is data (`table.rs`): one entry per command, one per subcommand of a
//! container command (`CLIENT`, `CONFIG`, `XINFO`, ...), named `container|sub` as Redis
//! names them in `COMMAND INFO` and in its arity errors.

pub mod blocking;
mod error;
mod keys;
pub mod learned;
mod lookup;
mod table;

use crate::protocol::scan::Request;

pub use error::CommandError;
pub use keys::{KeyIndices, KeyIter};

/// Access to a request's arguments; argument 0 is the command name.
///
/// Callers of [`Args::arg`] keep `i < argc()`; the table never asks for more.
pub trait Args {
    /// Number of arguments, the command name included.
    fn argc(&self) -> usize;
    /// Argument `i` (`i < argc()`).
    fn arg(&self, i: usize) -> &[u8];
}

impl<T: AsRef<[u8]>> Args for [T] {
    fn argc(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

impl<T: AsRef<[u8]>> Args for Vec<T> {
    fn argc(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

/// A request as the scanner found it on a client's connection.
impl Args for Request {
    fn argc(&self) -> usize {
        Request::argc(self)
    }

    fn arg(&self, i: usize) -> &[u8] {
        Request::arg(self, i)
    }
}

impl<T: AsRef<[u8]>, const N: usize> Args for [T; N] {
    fn argc(&self) -> usize {
        N
    }
    fn arg(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

/// Command flags, as bits of [`CommandSpec::flags`]. Most mirror Redis's own command flags;
/// `TRANSACTION`, `SPLITTABLE` and `SCRIPT_BODY` are the proxy's.
pub mod flags {
    /// Reads data, never modifies it.
    pub const READONLY: u32 = 1 << 0;
    /// May modify data.
    pub const WRITE: u32 = 1 << 1;
    /// May grow memory use (refused by a node over `maxmemory`).
    pub const DENYOOM: u32 = 1 << 2;
    /// Administrative command.
    pub const ADMIN: u32 = 1 << 3;
    /// Publish/subscribe command.
    pub const PUBSUB: u32 = 1 << 4;
    /// Not allowed inside scripts.
    pub const NOSCRIPT: u32 = 1 << 5;
    /// May block the connection until data arrives or a timeout.
    pub const BLOCKING: u32 = 1 << 6;
    /// O(1) or O(log N) command.
    pub const FAST: u32 = 1 << 7;
    /// Key positions depend on the arguments (numkeys, keywords).
    pub const MOVABLE_KEYS: u32 = 1 << 8;
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    pub const TRANSACTION: u32 = 1 << 9;
    /// MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: keys in different slots are split per slot
    /// and the replies merged in the client's key order.
    pub const SPLITTABLE: u32 = 1 << 10;
    /// EVAL, EVAL_RO: the request carries a script's body, which the proxy remembers so
    /// that a node without it (`NOSCRIPT` to an `EVALSHA`) can be given it.
    pub const SCRIPT_BODY: u32 = 1 << 11;
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Select,
    Hello,
    Auth,
    Info,
    ReadOnly,
    ReadWrite,
    Reset,
    ClientSetName,
    ClientGetName,
    ClientId,
    ClientSetInfo,
    ClientInfo,
    ClientList,
    ClientNoEvict,
    ClientNoTouch,
    ClientReply,
    /// `CLUSTER SLOTS`, `SHARDS`, `NODES`, `INFO`, `MYID`, `MYSHARDID`, `KEYSLOT`:
    /// slotgate as a one-node cluster owning every slot it serves, so cluster-aware
    /// clients keep talking to it.
    ClusterSlots,
    ClusterShards,
    ClusterNodes,
    ClusterInfo,
    ClusterMyId,
    ClusterMyShardId,
    ClusterKeySlot,
    ClientKill,
    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: a client of this slotgate blocked in a
    /// command (on any worker) is unblocked at its node.
    ClientUnblock,
    Monitor,
    /// `ACL WHOAMI`, `USERS`, `LIST`, `GETUSER`, `CAT`: the users slotgate's clients log
    /// in as (never the nodes' own).
    AclWhoAmI,
    AclUsers,
    AclList,
    AclGetUser,
    AclCat,
}

/// Cluster-wide commands: sent to every master (or every node) and the replies merged.
/// Where each goes and how its replies become one is [`FanOut::nodes`] and
/// [`FanOut::combine`]: the one list both the session (which carries it out) and the
/// README's support table (which describes it) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanOut {
    DbSize,
    Keys,
    Scan,
    FlushAll,
    FlushDb,
    RandomKey,
    ScriptLoad,
    ScriptFlush,
    ScriptExists,
    ScriptKill,
    FunctionLoad,
    FunctionDelete,
    FunctionFlush,
    FunctionRestore,
    FunctionKill,
    MemoryPurge,
    PubSubShardChannels,
    PubSubShardNumSub,
    PubSubChannels,
    PubSubNumSub,
    PubSubNumPat,
    SlowlogGet,
    SlowlogLen,
    SlowlogReset,
    ConfigSet,
    ConfigResetStat,
    LatencyReset,
    /// LATENCY LATEST, LATENCY HISTORY.
    LatencyEntries,
    /// LATENCY DOCTOR, LATENCY GRAPH.
    LatencyText,
    LatencyHistogram,
    FunctionStats,
}

/// Which nodes a cluster-wide command goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanOutNodes {
    /// Every master, at once.
    Masters,
    /// Every master and every replica connected to one (a config switch can refuse it).
    MastersAndReplicas,
    /// One master after another, one per client call (`SCAN`'s cursor).
    MastersInTurn,
}

/// How the replies of a cluster-wide command become the one reply a standalone server
/// gives; `dispatch::merge` carries each out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Combine {
    /// The integers summed.
    Sum,
    /// The arrays concatenated.
    Concat,
    /// `+OK` when every node says so.
    AllOk,
    /// The first non-null reply (each call starts at another master).
    FirstNonNull,
    /// Every node gives the same reply (a SHA1, a library name): that reply.
    Same,
    /// Element-wise: 1 only where every node says 1.
    AllOnes,
    /// `+OK` if any node said so, else the first error (`NOTBUSY`).
    AnyOk,
    /// The union of the arrays, each element once.
    Union,
    /// Subscribers per channel: the nodes' counts summed, slotgate's own subscriptions
    /// at the nodes replaced by the clients subscribed through slotgate.
    NumSub,
    /// Patterns subscribed: likewise.
    NumPat,
    /// Entries merged newest first, each naming its node.
    SlowlogGet,
    /// Entries concatenated, each naming its node.
    Tagged,
    /// Texts joined, each under its node's name.
    Texts,
    /// One node's keys behind slotgate's cursor.
    Scan,
    /// Per command: calls summed, histogram buckets merged.
    LatencyHistogram,
    /// One node's `FUNCTION STATS`, with the running function of any node that runs one.
    FunctionStats,
}

impl FanOut {
    /// Which nodes it goes to.
    pub const fn nodes(self) -> FanOutNodes {
        match self {
            FanOut::ConfigSet | FanOut::ConfigResetStat => FanOutNodes::MastersAndReplicas,
            FanOut::Scan => FanOutNodes::MastersInTurn,
            _ => FanOutNodes::Masters,
        }
    }

    /// How its replies become one.
    pub const fn combine(self) -> Combine {
        match self {
            FanOut::DbSize | FanOut::SlowlogLen | FanOut::LatencyReset => Combine::Sum,
            FanOut::Keys => Combine::Concat,
            FanOut::Scan => Combine::Scan,
            FanOut::FlushAll
            | FanOut::FlushDb
            | FanOut::ScriptFlush
            | FanOut::FunctionDelete
            | FanOut::FunctionFlush
            | FanOut::FunctionRestore
            | FanOut::MemoryPurge
            | FanOut::SlowlogReset
            | FanOut::ConfigSet
            | FanOut::ConfigResetStat => Combine::AllOk,
            FanOut::RandomKey => Combine::FirstNonNull,
            FanOut::ScriptLoad | FanOut::FunctionLoad => Combine::Same,
            FanOut::ScriptExists => Combine::AllOnes,
            FanOut::ScriptKill | FanOut::FunctionKill => Combine::AnyOk,
            FanOut::PubSubChannels | FanOut::PubSubShardChannels => Combine::Union,
            FanOut::PubSubNumSub | FanOut::PubSubShardNumSub => Combine::NumSub,
            FanOut::PubSubNumPat => Combine::NumPat,
            FanOut::SlowlogGet => Combine::SlowlogGet,
            FanOut::LatencyEntries => Combine::Tagged,
            FanOut::LatencyText => Combine::Texts,
            FanOut::LatencyHistogram => Combine::LatencyHistogram,
            FanOut::FunctionStats => Combine::FunctionStats,
        }
    }
}

/// How a request is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Answered by the proxy itself.
    Local(Local),
    /// Has keys; all must hash to one slot (the dispatcher checks, unless the command is
    /// [`flags::SPLITTABLE`]); goes to that slot's master.
    Slot,
    /// No key; any one master can answer (TIME, COMMAND, CONFIG GET, PUBLISH, EVAL with
    /// numkeys 0, MEMORY STATS, OBJECT HELP, ...).
    AnyNode,
    /// Cluster-wide.
    FanOut(FanOut),
    /// No key, but a slot number at argument 2 (`CLUSTER COUNTKEYSINSLOT`,
    /// `GETKEYSINSLOT`): that slot's master.
    SlotArgument,
    /// Blocking commands (BLPOP, ..., XREAD/XREADGROUP with BLOCK, WAIT, WAITAOF): need a
    /// dedicated backend connection. Keys, if any, are in [`Classified::keys`].
    Blocking,
    /// MULTI, EXEC, DISCARD, WATCH (keys in [`Classified::keys`]), UNWATCH.
    Transaction,
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE. For the
    /// sharded ones the channels are the keys.
    PubSub,
    /// Cannot be made correct behind this proxy; the text is the reason, e.g. "the proxy
    /// hides the cluster topology".
    Refused(&'static str),
}

/// How `numkeys`-style commands count and check their keys; each follows the checks and
/// error texts of the Redis command it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumKeysRule {
    /// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO: zero keys allowed.
    Script,
    /// FCALL, FCALL_RO: zero keys allowed.
    Function,
    /// ZUNION, ZINTER, ZDIFF, ZINTERCARD and the `*STORE` forms: at least one key.
    ZSetOp,
    /// SINTERCARD: at least one key.
    SetInterCard,
    /// LMPOP, ZMPOP, BLMPOP, BZMPOP: at least one key, followed by a direction.
    MPop,
}

/// Where a command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySpec {
    /// No keys.
    None,
    /// Keys at `first..=last` every `step`; a negative `last` counts from the end (-1 is the
    /// last argument, -2 the one before). With `step > 1` the arguments from `first` on
    /// must come in whole groups (MSET's key/value pairs), or it is an arity error.
    Range { first: u8, last: i8, step: u8 },
    /// The number of keys is the argument at `at`, and that many keys follow it; `dest` is
    /// a key before it (ZUNIONSTORE's destination).
    NumKeys {
        at: u8,
        dest: Option<u8>,
        rule: NumKeysRule,
    },
    /// SORT: the key at 1 and the destination of the last `STORE` option.
    Sort,
    /// GEORADIUS, GEORADIUSBYMEMBER: the key at 1 and the destination of the last
    /// `STORE`/`STOREDIST` option; options start at `options`.
    GeoStore { options: u8 },
    /// XREAD (`group: false`), XREADGROUP: the first half of the arguments after `STREAMS`;
    /// a `BLOCK` option makes the request [`Route::Blocking`].
    Streams { group: bool },
}

/// One command or subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lower-case canonical name: `"get"`, or `"client|setname"` for a subcommand.
    pub name: &'static str,
    /// Redis convention: positive = exact argc, negative = at least `-arity`. For a
    /// subcommand it counts the container name and the subcommand.
    pub arity: i32,
    /// Bits from [`flags`].
    pub flags: u32,
    /// Where the keys are.
    pub keys: KeySpec,
    /// How the command is routed; [`classify`] may refine it per request (EVAL with no
    /// keys goes to any node, XREAD with BLOCK is blocking).
    pub route: Route,
    /// Dispatches on its first argument (`CLIENT`, `CONFIG`, ...).
    pub container: bool,
}

impl CommandSpec {
    /// Whether all bits of `flag` are set.
    #[inline]
    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }

    /// Whether this is a subcommand (`client|setname`).
    pub fn is_subcommand(&self) -> bool {
        self.name.contains('|')
    }

    /// Whether `argc` arguments (the name included) satisfy the arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        let arity = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            argc == arity
        } else {
            argc >= arity
        }
    }
}

/// A request's command, route and key positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub spec: &'static CommandSpec,
    pub route: Route,
    pub keys: KeyIndices,
}

/// Looks up and classifies a request: case-insensitive on the command and subcommand name,
/// checks the arity and any `numkeys`/`STREAMS` arguments with Redis's own error texts.
/// No heap allocation unless it fails.
///
/// An empty request (`*0`) is an unknown command with an empty name; the session is
/// expected to skip empty requests as Redis does before asking.
pub fn classify(args: &(impl Args + ?Sized)) -> Result<Classified, CommandError> {
    let argc = args.argc();
    if argc == 0 {
        return Err(CommandError::unknown(args));
    }
    let Some(mut spec) = lookup::command(args.arg(0)) else {
        return Err(CommandError::unknown(args));
    };
    if spec.container && argc >= 2 {
        let sub = args.arg(1);
        spec = match lookup::subcommand(spec, sub) {
            Some(sub_spec) => sub_spec,
            None => return Err(CommandError::unknown_subcommand(spec, sub)),
        };
    }
    if !spec.arity_ok(argc) {
        return Err(CommandError::Arity { command: spec.name });
    }
    let mut keys = KeyIndices::NONE;
    let block = keys::extract(spec, args, &mut keys)?;
    let route = match spec.route {
        Route::Slot if block => Route::Blocking,
        Route::Slot if keys.is_empty() => Route::AnyNode,
        route => route,
    };
    Ok(Classified { spec, route, keys })
}

/// Case-insensitive lookup by name: a command (`"GET"`) or a subcommand by its full name
/// (`"client|setname"`).
#[inline]
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup::any(name)
}

/// Every command and subcommand in the table.
pub fn all() -> impl Iterator<Item = &'static CommandSpec> {
    table::COMMANDS.iter().chain(table::SUBCOMMANDS.iter())
}

/// The table position of a request's command (its subcommand's, for a container's
/// known subcommand): a small number that names it (`CLIENT LIST`'s `cmd`), found
/// without checking anything else. `None` for a command the table does not know.
#[inline]
pub fn position(args: &(impl Args + ?Sized)) -> Option<u16> {
    if args.argc() == 0 {
        return None;
    }
    let at = lookup::command_position(args.arg(0))?;
    let spec = lookup::at(at)?;
    let sub = match spec.container && args.argc() >= 2 {
        true => lookup::subcommand_position(spec, args.arg(1)),
        false => None,
    };
    Some(sub.unwrap_or(at) as u16)
}

/// The spec of a request's command (its subcommand's, for a container's known
/// subcommand; the container's for an unknown one), found without checking arity or
/// keys: for the session's rare questions about a request, leaving [`classify`] one
/// caller on the request path.
pub fn spec_of(args: &(impl Args + ?Sized)) -> Option<&'static CommandSpec> {
    position(args).and_then(at_position)
}

/// The spec at a [`position`].
pub fn at_position(position: u16) -> Option<&'static CommandSpec> {
    lookup::at(position as usize)
}

#[cfg(test)]
mod tests;
