//! The opt-in Wireshark key log: rows appended to `ikev2_decryption_table`
//! and `esp_sa` files (see [`crate::IkeSa::wireshark_ikev2_line`] and
//! [`crate::ChildSa::wireshark_esp_sa_lines`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Appends `lines` to the table `name` in `dir`, creating the directory and
/// the file (mode 0600: the rows are secrets) as needed.
pub fn append(dir: &Path, name: &str, lines: &[String]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for l in lines {
        writeln!(f, "{l}").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
