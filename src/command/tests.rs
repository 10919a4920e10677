//! Command-by-command tests of the table and of `classify`. Expected key positions and
//! error texts were checked against redis-server 7.0.15 (`COMMAND GETKEYS`, and the
//! errors it answers), except where a later version's wording is noted.

use std::collections::HashSet;

use super::*;

fn args(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace()
        .map(|a| a.as_bytes().to_vec())
        .collect()
}

fn ok(line: &str) -> Classified {
    match classify(&args(line)) {
        Ok(c) => c,
        Err(e) => panic!("{line}: {}", e.message()),
    }
}

fn keys(line: &str) -> Vec<usize> {
    ok(line).keys.iter().collect()
}

fn route(line: &str) -> Route {
    ok(line).route
}

fn err(line: &str) -> String {
    match classify(&args(line)) {
        Ok(c) => panic!("{line}: expected an error, got {c:?}"),
        Err(e) => e.message(),
    }
}

#[test]
fn names_are_lower_case_unique_and_well_formed() {
    let mut seen = HashSet::new();
    for spec in all() {
        assert!(!spec.name.is_empty());
        assert_eq!(spec.name, spec.name.to_ascii_lowercase(), "{}", spec.name);
        assert!(
            spec.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-|".contains(&b)),
            "{}",
            spec.name
        );
        assert!(seen.insert(spec.name), "duplicate {}", spec.name);
        assert_ne!(spec.arity, 0, "{}", spec.name);
    }
    for spec in table::COMMANDS {
        assert!(!spec.is_subcommand(), "{}", spec.name);
    }
}

#[test]
fn containers_and_subcommands_match_up() {
    for spec in table::SUBCOMMANDS {
        let (container, sub) = spec.name.split_once('|').unwrap();
        assert!(!sub.is_empty() && !sub.contains('|'), "{}", spec.name);
        let parent = lookup(container.as_bytes()).unwrap();
        assert!(parent.container, "{} has no container", spec.name);
        assert!(!spec.container);
        // Container name and subcommand are argv[0] and argv[1].
        assert!(spec.arity.abs() >= 2, "{}", spec.name);
    }
    for spec in table::COMMANDS.iter().filter(|s| s.container) {
        let prefix = format!("{}|", spec.name);
        assert!(
            table::SUBCOMMANDS
                .iter()
                .any(|s| s.name.starts_with(&prefix)),
            "{} has no subcommands",
            spec.name
        );
        assert_eq!(spec.keys, KeySpec::None);
    }
}

#[test]
fn specs_are_consistent() {
    for spec in all() {
        let keyed = spec.keys != KeySpec::None;
        match spec.route {
            Route::Slot => assert!(keyed, "{} routes by slot but has no keys", spec.name),
            Route::AnyNode | Route::FanOut(_) | Route::Local(_) => {
                assert!(!keyed, "{} has keys but ignores them", spec.name)
            }
            _ => {}
        }
        assert!(
            !(spec.has_flag(flags::READONLY) && spec.has_flag(flags::WRITE)),
            "{}",
            spec.name
        );
        if let (KeySpec::Range { first, last, .. }, false) =
            (spec.keys, spec.name == "sunsubscribe")
        {
            // The arity guarantees every key of the range is there (SUNSUBSCRIBE alone
            // may have none).
            let needed = if last >= 0 {
                i32::from(last) + 1
            } else {
                i32::from(first) + 1
            };
            assert!(spec.arity.abs() >= needed, "{}", spec.name);
        }
    }
    for name in ["mget", "mset", "del", "unlink", "exists", "touch"] {
        assert!(lookup(name.as_bytes()).unwrap().has_flag(flags::SPLITTABLE));
    }
    assert_eq!(
        all().filter(|s| s.has_flag(flags::SPLITTABLE)).count(),
        6,
        "only the six split-and-merge commands are splittable"
    );
    for name in ["multi", "exec", "discard", "watch", "unwatch"] {
        assert!(lookup(name.as_bytes())
            .unwrap()
            .has_flag(flags::TRANSACTION));
    }
}

#[test]
fn table_covers_redis_7_commands() {
    let expected = "\
        append bitcount bitfield bitfield_ro bitop bitpos blmove blmpop blpop brpop brpoplpush \
        bzmpop bzpopmax bzpopmin copy dbsize decr decrby del dump eval eval_ro evalsha \
        evalsha_ro exists expire expireat expiretime fcall fcall_ro flushall flushdb geoadd \
        geodist geohash geopos georadius georadius_ro georadiusbymember georadiusbymember_ro \
        geosearch geosearchstore get getbit getdel getex getrange getset hdel hexists hexpire \
        hexpireat hexpiretime hget hgetall hgetdel hgetex hincrby hincrbyfloat hkeys hlen hmget \
        hmset hpersist hpexpire hpexpireat hpexpiretime hpttl hrandfield hscan hset hsetex \
        hsetnx hstrlen httl hvals incr incrby incrbyfloat keys lcs lindex linsert llen lmove \
        lmpop lpop lpos lpush lpushx lrange lrem lset ltrim mget mset msetnx persist pexpire \
        pexpireat pexpiretime pfadd pfcount pfmerge psetex pttl publish randomkey rename \
        renamenx restore rpop rpoplpush rpush rpushx sadd scan scard sdiff sdiffstore set \
        setbit setex setnx setrange sinter sintercard sinterstore sismember smembers \
        smismember smove sort sort_ro spop spublish srandmember srem sscan strlen substr \
        sunion sunionstore touch ttl type unlink wait waitaof xack xadd xautoclaim xclaim xdel \
        xlen xpending xrange xread xreadgroup xrevrange xsetid xtrim zadd zcard zcount zdiff \
        zdiffstore zincrby zinter zintercard zinterstore zlexcount zmpop zmscore zpopmax \
        zpopmin zrandmember zrange zrangebylex zrangebyscore zrangestore zrank zrem \
        zremrangebylex zremrangebyrank zremrangebyscore zrevrange zrevrangebylex \
        zrevrangebyscore zrevrank zscan zscore zunion zunionstore \
        object|encoding object|freq object|idletime object|refcount memory|usage \
        xinfo|stream xinfo|groups xinfo|consumers xgroup|create xgroup|destroy xgroup|setid \
        xgroup|createconsumer xgroup|delconsumer script|load script|flush script|exists \
        function|load function|delete function|flush client|setinfo client|no-touch";
    for name in expected.split_whitespace() {
        assert!(lookup(name.as_bytes()).is_some(), "{name} missing");
    }
    assert!(all().count() > 370);
}

#[test]
fn lookup_is_case_insensitive() {
    assert_eq!(lookup(b"get").unwrap().name, "get");
    assert_eq!(lookup(b"GET").unwrap().name, "get");
    assert_eq!(lookup(b"gEt").unwrap().name, "get");
    assert_eq!(lookup(b"CLIENT|SetName").unwrap().name, "client|setname");
    assert!(lookup(b"nosuchcommand").is_none());
    assert_eq!(ok("gEt k").spec.name, "get");
    assert_eq!(ok("Client SETNAME x").spec.name, "client|setname");
    assert_eq!(ok("xinfo STREAM s").spec.name, "xinfo|stream");
    assert_eq!(keys("xinfo STREAM s"), vec![2]);
}

#[test]
fn classify_works_on_slices_arrays_and_vecs() {
    let slices: [&[u8]; 2] = [b"GET", b"k"];
    assert_eq!(classify(&slices[..]).unwrap().spec.name, "get");
    assert_eq!(classify(&slices).unwrap().spec.name, "get");
    let owned: Vec<Vec<u8>> = vec![b"get".to_vec(), b"k".to_vec()];
    assert_eq!(classify(&owned).unwrap().keys.first(), Some(1));
    let strs = vec!["MGET", "a", "b"];
    assert_eq!(classify(&strs).unwrap().keys.len(), 2);
}

#[test]
fn key_positions_of_simple_commands() {
    assert_eq!(keys("GET k"), vec![1]);
    assert_eq!(keys("SET k v"), vec![1]);
    assert_eq!(keys("SET k v EX 10 NX GET"), vec![1]);
    assert_eq!(keys("MGET a b c"), vec![1, 2, 3]);
    assert_eq!(keys("MSET a 1 b 2 c 3"), vec![1, 3, 5]);
    assert_eq!(keys("MSETNX a 1 b 2"), vec![1, 3]);
    assert_eq!(keys("DEL a"), vec![1]);
    assert_eq!(keys("DEL a b c"), vec![1, 2, 3]);
    assert_eq!(keys("UNLINK a b"), vec![1, 2]);
    assert_eq!(keys("EXISTS a b"), vec![1, 2]);
    assert_eq!(keys("TOUCH a b"), vec![1, 2]);
    assert_eq!(keys("RENAME a b"), vec![1, 2]);
    assert_eq!(keys("RENAMENX a b"), vec![1, 2]);
    assert_eq!(keys("COPY a b DB 0 REPLACE"), vec![1, 2]);
    assert_eq!(keys("LMOVE a b LEFT RIGHT"), vec![1, 2]);
    assert_eq!(keys("SMOVE a b m"), vec![1, 2]);
    assert_eq!(keys("RPOPLPUSH a b"), vec![1, 2]);
    assert_eq!(keys("BITOP AND d a b"), vec![2, 3, 4]);
    assert_eq!(keys("BITOP NOT d a"), vec![2, 3]);
    assert_eq!(keys("LCS a b LEN"), vec![1, 2]);
    assert_eq!(keys("PFMERGE d a b"), vec![1, 2, 3]);
    assert_eq!(keys("PFMERGE d"), vec![1]);
    assert_eq!(keys("PFCOUNT a b"), vec![1, 2]);
    assert_eq!(keys("SINTERSTORE d a b"), vec![1, 2, 3]);
    assert_eq!(
        keys("GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km"),
        vec![1, 2]
    );
    assert_eq!(keys("ZRANGESTORE d s 0 -1"), vec![1, 2]);
    assert_eq!(keys("GETEX k PERSIST"), vec![1]);
    assert_eq!(keys("SUBSTR k 0 1"), vec![1]);
    assert_eq!(keys("HEXPIRE h 10 FIELDS 1 f"), vec![1]);
    assert_eq!(keys("HTTL h FIELDS 2 f g"), vec![1]);
    assert_eq!(keys("HSETEX h EX 10 FIELDS 1 f v"), vec![1]);
    assert_eq!(keys("SPUBLISH chan msg"), vec![1]);
    assert_eq!(keys("OBJECT ENCODING k"), vec![2]);
    assert_eq!(keys("object freq k"), vec![2]);
    assert_eq!(keys("XINFO STREAM s FULL COUNT 10"), vec![2]);
    assert_eq!(keys("XINFO CONSUMERS s g"), vec![2]);
    assert_eq!(keys("XGROUP CREATE s g $ MKSTREAM"), vec![2]);
    assert_eq!(keys("MEMORY USAGE k SAMPLES 5"), vec![2]);
    assert_eq!(route("MEMORY USAGE k"), Route::Slot);
    assert_eq!(route("GET k"), Route::Slot);
}

#[test]
fn blocking_list_and_zset_commands_keep_their_keys() {
    let c = ok("BLPOP a b 0");
    assert_eq!(c.route, Route::Blocking);
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(keys("BRPOP a 1.5"), vec![1]);
    assert_eq!(keys("BZPOPMIN a b c 0"), vec![1, 2, 3]);
    assert_eq!(keys("BLMOVE a b LEFT RIGHT 0"), vec![1, 2]);
    assert_eq!(keys("BRPOPLPUSH a b 0"), vec![1, 2]);
    assert_eq!(route("BLMOVE a b LEFT RIGHT 0"), Route::Blocking);
    assert_eq!(route("BZPOPMAX a 0"), Route::Blocking);
    assert_eq!(route("WAIT 1 0"), Route::Blocking);
    assert_eq!(route("WAITAOF 1 0 0"), Route::Blocking);
    assert!(ok("WAIT 1 0").keys.is_empty());
}

#[test]
fn eval_and_fcall_keys_follow_numkeys() {
    let c = ok("EVAL script 0");
    assert!(c.keys.is_empty());
    assert_eq!(c.route, Route::AnyNode);
    assert_eq!(route("EVAL script 0 arg1 arg2"), Route::AnyNode);
    let c = ok("EVAL script 2 a b arg");
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(c.route, Route::Slot);
    assert_eq!(keys("EVALSHA sha 1 a"), vec![3]);
    assert_eq!(keys("EVAL_RO s 1 a b"), vec![3]);
    assert_eq!(keys("EVALSHA_RO sha 2 a b"), vec![3, 4]);
    assert_eq!(keys("FCALL f 2 a b c"), vec![3, 4]);
    assert_eq!(route("FCALL f 0 x"), Route::AnyNode);
    assert_eq!(route("FCALL_RO f 1 k"), Route::Slot);
}

#[test]
fn eval_and_fcall_numkeys_errors() {
    assert_eq!(
        err("EVAL s x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("EVAL s 1.5 a"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("EVAL s 05 a"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("EVAL s +1 a"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("EVAL s 3 a"),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(err("EVAL s -1"), "ERR Number of keys can't be negative");
    assert_eq!(
        err("EVALSHA sha -1 a"),
        "ERR Number of keys can't be negative"
    );
    assert_eq!(err("FCALL f x"), "ERR Bad number of keys provided");
    assert_eq!(err("FCALL_RO f x"), "ERR Bad number of keys provided");
    assert_eq!(
        err("FCALL f 3"),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(err("FCALL f -1"), "ERR Number of keys can't be negative");
    assert_eq!(
        err("EVAL s"),
        "ERR wrong number of arguments for 'eval' command"
    );
}

#[test]
fn zset_numkeys_commands() {
    assert_eq!(keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), vec![1, 3, 4]);
    assert_eq!(keys("ZINTERSTORE d 1 a"), vec![1, 3]);
    assert_eq!(keys("ZDIFFSTORE d 2 a b"), vec![1, 3, 4]);
    assert_eq!(keys("ZUNION 2 a b WITHSCORES"), vec![2, 3]);
    assert_eq!(keys("ZINTER 1 a"), vec![2]);
    assert_eq!(keys("ZDIFF 2 a b"), vec![2, 3]);
    assert_eq!(keys("ZINTERCARD 2 a b LIMIT 5"), vec![2, 3]);
    assert_eq!(
        err("ZUNIONSTORE d x a"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("ZUNIONSTORE d 0 a"),
        "ERR at least 1 input key is needed for 'zunionstore' command"
    );
    assert_eq!(
        err("ZUNIONSTORE d -1 a"),
        "ERR at least 1 input key is needed for 'zunionstore' command"
    );
    assert_eq!(err("ZUNIONSTORE d 3 a"), "ERR syntax error");
    assert_eq!(
        err("ZINTERCARD 0 a"),
        "ERR at least 1 input key is needed for 'zintercard' command"
    );
    assert_eq!(err("ZINTERCARD 3 a"), "ERR syntax error");
    assert_eq!(
        err("ZINTERCARD x a"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("ZDIFF 0 a"),
        "ERR at least 1 input key is needed for 'zdiff' command"
    );
}

#[test]
fn set_and_pop_numkeys_commands() {
    assert_eq!(keys("SINTERCARD 2 a b LIMIT 3"), vec![2, 3]);
    assert_eq!(keys("SINTERCARD 1 a"), vec![2]);
    assert_eq!(
        err("SINTERCARD 0 a"),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        err("SINTERCARD x a"),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        err("SINTERCARD -1 a"),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        err("SINTERCARD 3 a"),
        "ERR Number of keys can't be greater than number of args"
    );

    assert_eq!(keys("LMPOP 2 a b LEFT COUNT 2"), vec![2, 3]);
    assert_eq!(keys("ZMPOP 1 a MIN"), vec![2]);
    assert_eq!(route("LMPOP 1 a LEFT"), Route::Slot);
    assert_eq!(
        err("LMPOP 0 a LEFT"),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        err("LMPOP x a LEFT"),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(err("LMPOP 3 a LEFT"), "ERR syntax error");
    assert_eq!(err("LMPOP 2 a LEFT"), "ERR syntax error");
    assert_eq!(err("ZMPOP 3 a MIN"), "ERR syntax error");

    let c = ok("BLMPOP 0 2 a b LEFT");
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(c.route, Route::Blocking);
    assert_eq!(keys("BZMPOP 1.5 1 z MAX COUNT 3"), vec![3]);
    assert_eq!(route("BZMPOP 1 1 z MAX"), Route::Blocking);
    assert_eq!(
        err("BLMPOP 1 0 a LEFT"),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(err("BLMPOP 1 3 a LEFT"), "ERR syntax error");
    assert_eq!(err("BZMPOP 1 5 a MIN"), "ERR syntax error");
}

#[test]
fn xread_keys_are_the_first_half_after_streams() {
    let c = ok("XREAD COUNT 10 STREAMS a b 0 0");
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(c.route, Route::Slot);
    assert_eq!(keys("xread streams s $"), vec![2]);
    let c = ok("XREAD BLOCK 0 STREAMS a b 0 0");
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(c.route, Route::Blocking);
    assert_eq!(
        route("XREAD COUNT 1 block 100 STREAMS a $"),
        Route::Blocking
    );
    // A key named like an option.
    assert_eq!(keys("XREAD STREAMS streams block 0 0"), vec![2, 3]);

    let c = ok("XREADGROUP GROUP g c COUNT 1 NOACK STREAMS a b > >");
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![8, 9]);
    assert_eq!(c.route, Route::Slot);
    let c = ok("XREADGROUP GROUP g c BLOCK 5 STREAMS a >");
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![7]);
    assert_eq!(c.route, Route::Blocking);
    // The group is named "streams": the keys are those the command reads.
    assert_eq!(
        keys("XREADGROUP COUNT 1 GROUP streams c STREAMS a 0"),
        vec![7]
    );
}

#[test]
fn xread_errors() {
    assert_eq!(
        err("XREAD STREAMS a b c"),
        "ERR Unbalanced 'xread' list of streams: for each stream key an ID, '+', or '$' must be specified."
    );
    assert_eq!(
        err("XREADGROUP GROUP g c STREAMS a b c"),
        "ERR Unbalanced 'xreadgroup' list of streams: for each stream key an ID or '>' must be specified."
    );
    assert_eq!(err("XREAD COUNT 1 a b"), "ERR syntax error");
    assert_eq!(err("XREAD COUNT 1 BLOCK"), "ERR syntax error");
    assert_eq!(err("XREAD COUNT 1 STREAMS"), "ERR syntax error");
    assert_eq!(
        err("XREAD BLOCK x STREAMS a 0"),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(err("XREAD BLOCK -1 STREAMS a 0"), "ERR timeout is negative");
    assert_eq!(
        err("XREAD COUNT x STREAMS a 0"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("XREAD GROUP g c STREAMS a 0"),
        "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
    );
    assert_eq!(
        err("XREAD NOACK STREAMS a 0"),
        "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
    );
    assert_eq!(
        err("XREADGROUP COUNT 1 STREAMS a b c d"),
        "ERR Missing GROUP option for XREADGROUP"
    );
    assert_eq!(
        err("XREAD STREAMS a"),
        "ERR wrong number of arguments for 'xread' command"
    );
    assert_eq!(
        err("XREADGROUP GROUP g c STREAMS a"),
        "ERR wrong number of arguments for 'xreadgroup' command"
    );
}

#[test]
fn sort_and_georadius_store_destinations() {
    assert_eq!(keys("SORT k"), vec![1]);
    assert_eq!(keys("SORT k BY w_* GET # ALPHA"), vec![1]);
    assert_eq!(keys("SORT k LIMIT 0 10 STORE d"), vec![1, 6]);
    assert_eq!(keys("SORT k STORE a STORE b"), vec![1, 5]);
    // GET's pattern is not a STORE option.
    assert_eq!(keys("SORT k GET store STORE d"), vec![1, 5]);
    assert_eq!(keys("SORT k GET store"), vec![1]);
    assert_eq!(keys("SORT_RO k BY x STORE d"), vec![1]);

    assert_eq!(keys("GEORADIUS k 1 2 3 m"), vec![1]);
    assert_eq!(keys("GEORADIUS k 1 2 3 m STORE d"), vec![1, 7]);
    assert_eq!(keys("GEORADIUS k 1 2 3 m COUNT 5 STOREDIST d"), vec![1, 9]);
    assert_eq!(keys("georadius k 1 2 3 m store a storedist b"), vec![1, 9]);
    // STORE in the unit's place is not an option (COMMAND GETKEYS agrees).
    assert_eq!(keys("GEORADIUS k 1 2 3 store m a"), vec![1]);
    assert_eq!(keys("GEORADIUSBYMEMBER k m 3 km STORE d"), vec![1, 6]);
    assert_eq!(keys("GEORADIUSBYMEMBER k m 3 STORE x"), vec![1]);
    assert_eq!(keys("GEORADIUS_RO k 1 2 3 m STORE d"), vec![1]);
}

#[test]
fn arity_errors_name_the_command_as_redis_does() {
    assert_eq!(
        err("GET"),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err("get a b"),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err("MGET"),
        "ERR wrong number of arguments for 'mget' command"
    );
    assert_eq!(
        err("MSET a"),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err("MSET a b c"),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err("MSETNX a b c"),
        "ERR wrong number of arguments for 'msetnx' command"
    );
    assert_eq!(
        err("ZRANK z"),
        "ERR wrong number of arguments for 'zrank' command"
    );
    assert_eq!(keys("ZRANK z m WITHSCORE"), vec![1]);
    assert_eq!(
        err("CLIENT"),
        "ERR wrong number of arguments for 'client' command"
    );
    assert_eq!(
        err("OBJECT"),
        "ERR wrong number of arguments for 'object' command"
    );
    assert_eq!(
        err("XINFO"),
        "ERR wrong number of arguments for 'xinfo' command"
    );
    assert_eq!(
        err("client setname"),
        "ERR wrong number of arguments for 'client|setname' command"
    );
    assert_eq!(
        err("CONFIG GET"),
        "ERR wrong number of arguments for 'config|get' command"
    );
    assert_eq!(
        err("xinfo stream"),
        "ERR wrong number of arguments for 'xinfo|stream' command"
    );
    assert_eq!(
        err("MEMORY USAGE"),
        "ERR wrong number of arguments for 'memory|usage' command"
    );
    assert_eq!(
        err("DEBUG"),
        "ERR wrong number of arguments for 'debug' command"
    );
    assert_eq!(
        CommandError::Arity { command: "get" }.to_string(),
        "ERR wrong number of arguments for 'get' command"
    );
}

#[test]
fn unknown_commands_and_subcommands() {
    assert_eq!(
        err("FOO a b"),
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err("foo"),
        "ERR unknown command 'foo', with args beginning with: "
    );
    // A subcommand's full name is not a command.
    assert_eq!(
        err("client|setname x"),
        "ERR unknown command 'client|setname', with args beginning with: 'x' "
    );
    assert_eq!(
        err("CLIENT foo"),
        "ERR unknown subcommand 'foo'. Try CLIENT HELP."
    );
    assert_eq!(
        err("client foo bar"),
        "ERR unknown subcommand 'foo'. Try CLIENT HELP."
    );
    assert_eq!(
        err("xinfo nope"),
        "ERR unknown subcommand 'nope'. Try XINFO HELP."
    );
    assert_eq!(
        err("COMMAND nope"),
        "ERR unknown subcommand 'nope'. Try COMMAND HELP."
    );
    let long = format!("CLIENT {}", "x".repeat(200));
    assert_eq!(
        err(&long),
        format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            "x".repeat(128)
        )
    );
    assert!(classify(&Vec::<Vec<u8>>::new()).is_err());
    // Longer than any command name.
    assert!(matches!(
        classify(&args(&"g".repeat(100))),
        Err(CommandError::Unknown { .. })
    ));
}

#[test]
fn local_commands() {
    assert_eq!(route("PING"), Route::Local(Local::Ping));
    assert_eq!(route("ping hello"), Route::Local(Local::Ping));
    assert_eq!(route("ECHO x"), Route::Local(Local::Echo));
    assert_eq!(route("QUIT"), Route::Local(Local::Quit));
    assert_eq!(route("SELECT 0"), Route::Local(Local::Select));
    assert_eq!(route("HELLO 3 AUTH u p"), Route::Local(Local::Hello));
    assert_eq!(route("AUTH p"), Route::Local(Local::Auth));
    assert_eq!(route("INFO"), Route::Local(Local::Info));
    assert_eq!(route("INFO server"), Route::Local(Local::Info));
    assert_eq!(route("READONLY"), Route::Local(Local::ReadOnly));
    assert_eq!(route("READWRITE"), Route::Local(Local::ReadWrite));
    assert_eq!(route("RESET"), Route::Local(Local::Reset));
    assert_eq!(
        route("CLIENT SETNAME n"),
        Route::Local(Local::ClientSetName)
    );
    assert_eq!(route("CLIENT GETNAME"), Route::Local(Local::ClientGetName));
    assert_eq!(route("CLIENT ID"), Route::Local(Local::ClientId));
    assert_eq!(
        route("CLIENT SETINFO LIB-NAME x"),
        Route::Local(Local::ClientSetInfo)
    );
    assert_eq!(route("CLIENT INFO"), Route::Local(Local::ClientInfo));
    assert_eq!(route("CLIENT LIST"), Route::Local(Local::ClientList));
    assert_eq!(
        route("CLIENT NO-EVICT on"),
        Route::Local(Local::ClientNoEvict)
    );
    assert_eq!(
        route("CLIENT NO-TOUCH on"),
        Route::Local(Local::ClientNoTouch)
    );
    assert_eq!(route("CLIENT REPLY OFF"), Route::Local(Local::ClientReply));
    assert_eq!(route("CLIENT KILL ID 1"), Route::Local(Local::ClientKill));
    assert_eq!(route("MONITOR"), Route::Local(Local::Monitor));
}

#[test]
fn any_node_commands() {
    for line in [
        "TIME",
        "LOLWUT",
        "LASTSAVE",
        "COMMAND",
        "COMMAND COUNT",
        "COMMAND INFO get",
        "COMMAND DOCS",
        "COMMAND GETKEYS get k",
        "CONFIG GET maxmemory",
        "PUBLISH chan msg",
        "MEMORY STATS",
        "MEMORY DOCTOR",
        "MEMORY MALLOC-STATS",
        "OBJECT HELP",
        "XINFO HELP",
        "SCRIPT HELP",
        "FUNCTION LIST",
        "FUNCTION DUMP",
        "CLIENT HELP",
    ] {
        assert_eq!(route(line), Route::AnyNode, "{line}");
        assert!(ok(line).keys.is_empty(), "{line}");
    }
}

#[test]
fn fan_out_commands() {
    for (line, fan) in [
        ("DBSIZE", FanOut::DbSize),
        ("KEYS *", FanOut::Keys),
        ("SCAN 0 MATCH a*", FanOut::Scan),
        ("FLUSHALL ASYNC", FanOut::FlushAll),
        ("FLUSHDB", FanOut::FlushDb),
        ("RANDOMKEY", FanOut::RandomKey),
        ("SCRIPT LOAD return", FanOut::ScriptLoad),
        ("SCRIPT FLUSH", FanOut::ScriptFlush),
        ("SCRIPT EXISTS a b", FanOut::ScriptExists),
        ("SCRIPT KILL", FanOut::ScriptKill),
        ("FUNCTION LOAD code", FanOut::FunctionLoad),
        ("FUNCTION DELETE lib", FanOut::FunctionDelete),
        ("FUNCTION FLUSH", FanOut::FunctionFlush),
        ("FUNCTION RESTORE payload", FanOut::FunctionRestore),
        ("FUNCTION KILL", FanOut::FunctionKill),
        ("MEMORY PURGE", FanOut::MemoryPurge),
        ("PUBSUB SHARDCHANNELS", FanOut::PubSubShardChannels),
        ("PUBSUB SHARDNUMSUB a", FanOut::PubSubShardNumSub),
        ("PUBSUB CHANNELS", FanOut::PubSubChannels),
        ("PUBSUB NUMSUB a", FanOut::PubSubNumSub),
        ("PUBSUB NUMPAT", FanOut::PubSubNumPat),
        ("SLOWLOG GET 5", FanOut::SlowlogGet),
        ("SLOWLOG LEN", FanOut::SlowlogLen),
        ("SLOWLOG RESET", FanOut::SlowlogReset),
        ("CONFIG SET a b", FanOut::ConfigSet),
        ("CONFIG RESETSTAT", FanOut::ConfigResetStat),
        ("LATENCY RESET", FanOut::LatencyReset),
        ("LATENCY LATEST", FanOut::LatencyEntries),
        ("LATENCY HISTORY command", FanOut::LatencyEntries),
        ("LATENCY DOCTOR", FanOut::LatencyText),
    ] {
        assert_eq!(route(line), Route::FanOut(fan), "{line}");
    }
    // HSCAN and friends have a key.
    assert_eq!(route("HSCAN h 0"), Route::Slot);
}

#[test]
fn transaction_and_pubsub_commands() {
    for line in ["MULTI", "EXEC", "DISCARD", "UNWATCH"] {
        assert_eq!(route(line), Route::Transaction, "{line}");
    }
    let c = ok("WATCH a b");
    assert_eq!(c.route, Route::Transaction);
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![1, 2]);

    for line in [
        "SUBSCRIBE a b",
        "PSUBSCRIBE a*",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
    ] {
        assert_eq!(route(line), Route::PubSub, "{line}");
        assert!(ok(line).keys.is_empty(), "{line}");
    }
    let c = ok("SSUBSCRIBE a b");
    assert_eq!(c.route, Route::PubSub);
    assert_eq!(c.keys.iter().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(keys("SUNSUBSCRIBE a"), vec![1]);
    assert_eq!(route("SPUBLISH chan msg"), Route::Slot);
}

#[test]
fn refused_commands_give_a_reason() {
    for line in [
        "SYNC",
        "PSYNC id 0",
        "REPLCONF listening-port 1",
        "CLUSTER LINKS",
        "CLUSTER ADDSLOTS 1",
        "CLUSTER FAILOVER",
        "CLUSTER HELP",
        "ASKING",
        "MOVE k 1",
        "SWAPDB 0 1",
        "MIGRATE h 1 k 0 10",
        "SHUTDOWN",
        "DEBUG SLEEP 0",
        "SAVE",
        "BGSAVE",
        "BGREWRITEAOF",
        "SLAVEOF no one",
        "REPLICAOF no one",
        "FAILOVER",
        "CLIENT PAUSE 10",
        "CLIENT UNPAUSE",
        "CLIENT TRACKING on",
        "CLIENT CACHING yes",
        "CLIENT GETREDIR",
        "CONFIG REWRITE",
        "ACL SETUSER u on",
        "MODULE LIST",
        "SCRIPT DEBUG yes",
    ] {
        match route(line) {
            Route::Refused(reason) => assert!(!reason.is_empty(), "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
    assert_eq!(
        route("CLUSTER ADDSLOTS 1"),
        Route::Refused("the proxy hides the cluster topology")
    );
    assert_eq!(route("CLUSTER NODES"), Route::Local(Local::ClusterNodes));
    // slotgate's own users, not the nodes'.
    assert_eq!(route("ACL WHOAMI"), Route::Local(Local::AclWhoAmI));
    assert_eq!(route("ACL GETUSER u"), Route::Local(Local::AclGetUser));
    assert_eq!(route("CLUSTER COUNTKEYSINSLOT 1"), Route::SlotArgument);
    // Refused containers still check their subcommands.
    assert_eq!(
        err("CLUSTER nope"),
        "ERR unknown subcommand 'nope'. Try CLUSTER HELP."
    );
    assert_eq!(
        err("CLUSTER"),
        "ERR wrong number of arguments for 'cluster' command"
    );
}

#[test]
fn flags_describe_the_command() {
    let get = lookup(b"get").unwrap();
    assert!(get.has_flag(flags::READONLY | flags::FAST));
    assert!(!get.has_flag(flags::WRITE));
    assert!(lookup(b"set")
        .unwrap()
        .has_flag(flags::WRITE | flags::DENYOOM));
    assert!(lookup(b"blpop").unwrap().has_flag(flags::BLOCKING));
    assert!(lookup(b"xread").unwrap().has_flag(flags::BLOCKING));
    assert!(lookup(b"subscribe").unwrap().has_flag(flags::PUBSUB));
    assert!(lookup(b"config|set").unwrap().has_flag(flags::ADMIN));
    assert!(lookup(b"eval").unwrap().has_flag(flags::MOVABLE_KEYS));
}
