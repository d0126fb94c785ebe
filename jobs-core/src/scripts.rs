//! The Lua scripts behind every state change, one file each, with headers
//! naming their KEYS, ARGV and reply. `redis::Script` sends EVALSHA and falls
//! back to EVAL once if the server does not have the script cached. Each is
//! prefixed with `common.lua`, the helpers they share.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/common.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        });
    };
}

script!(CREATE, "create.lua");
script!(CLAIM, "claim.lua");
script!(FINISH, "finish.lua");
script!(PROGRESS, "progress.lua");
script!(CANCEL, "cancel.lua");
script!(LIST, "list.lua");
script!(RENEW, "renew.lua");
script!(RECOVER, "recover.lua");
script!(TAKE_UP, "take_up.lua");
script!(STATS, "stats.lua");
script!(CLEAR_DATA, "clear_data.lua");
