//! A configuration file: loaded through every layer and validated as `concierge serve` does.
//! Whatever it holds, the loader answers with a configuration or an error, never a panic.
#![no_main]

use concierge_daemon::config::{Flags, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("concierge-fuzz-{}.toml", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let _ = load(&flags, Vec::<(String, String)>::new());
});
