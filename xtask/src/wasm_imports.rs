//! Short names for the JS functions the web app's wasm imports.
//!
//! wasm-bindgen names each import after the function and a hash
//! (`__wbg_setAttribute_2bba6b5e9a4d8a55`); the name is written twice, in the
//! wasm's import section and as a key of web.js's imports object, and the
//! hashes do not compress. Renaming them `a0`, `a1`, … in both files takes
//! about 10 KB gzip off every page's first load. Only the imports of
//! wasm-bindgen's own module are renamed; the rest of the module is copied
//! byte for byte.

use std::collections::HashMap;
use std::path::Path;

use crate::util::Result;

/// The module name wasm-bindgen gives the JS glue's imports.
const GLUE_MODULE: &str = "./web_bg.js";

/// Renames the glue imports of `wasm` and the matching keys of `js`, in
/// place; fails (changing nothing) on anything it does not recognize.
pub fn shorten(wasm: &Path, js: &Path) -> Result<usize> {
    let module = std::fs::read(wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?;
    let glue = std::fs::read_to_string(js).map_err(|e| format!("cannot read {}: {e}", js.display()))?;
    let (module, renamed) = rename_imports(&module).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let glue = rename_keys(&glue, &renamed).map_err(|e| format!("{}: {e}", js.display()))?;
    std::fs::write(wasm, module).map_err(|e| format!("cannot write {}: {e}", wasm.display()))?;
    std::fs::write(js, glue).map_err(|e| format!("cannot write {}: {e}", js.display()))?;
    Ok(renamed.len())
}

/// Whether `wasm` imports anything from the glue module (a split module must
/// not: its names would not be renamed).
pub fn imports_glue(wasm: &[u8]) -> std::result::Result<bool, String> {
    Ok(!rename_imports(wasm)?.1.is_empty())
}

/// The module with its glue imports renamed, and old name → new name.
fn rename_imports(module: &[u8]) -> std::result::Result<(Vec<u8>, HashMap<String, String>), String> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err("not a WebAssembly module".into());
    }
    let mut out = module[..8].to_vec();
    let mut renamed = HashMap::new();
    let mut at = 8;
    while at < module.len() {
        let start = at;
        let id = module[at];
        let (size, body_at) = leb_u32(module, at + 1)?;
        let end = body_at.checked_add(size as usize).filter(|&end| end <= module.len());
        let end = end.ok_or("a section runs past the end")?;
        at = end;
        if id != 2 {
            out.extend_from_slice(&module[start..end]);
            continue;
        }
        let body = rename_in_import_section(&module[body_at..end], &mut renamed)?;
        out.push(id);
        put_leb(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
    }
    Ok((out, renamed))
}

fn rename_in_import_section(
    body: &[u8],
    renamed: &mut HashMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let (count, mut at) = leb_u32(body, 0)?;
    let mut out = Vec::with_capacity(body.len());
    put_leb(&mut out, count);
    for index in 0..count {
        let (module, next) = name(body, at)?;
        let (field, next) = name(body, next)?;
        let descriptor_end = skip_descriptor(body, next)?;
        let field = if module == GLUE_MODULE {
            let short = format!("a{index:x}");
            renamed.insert(field.to_string(), short.clone());
            short
        } else {
            field.to_string()
        };
        put_name(&mut out, module);
        put_name(&mut out, &field);
        out.extend_from_slice(&body[next..descriptor_end]);
        at = descriptor_end;
    }
    if at != body.len() {
        return Err("the import section has bytes after its last import".into());
    }
    Ok(out)
}

/// The end of the import descriptor at `at` (function, table, memory or
/// global, as wasm-bindgen's output has them).
fn skip_descriptor(body: &[u8], at: usize) -> std::result::Result<usize, String> {
    let kind = *body.get(at).ok_or("an import without a kind")?;
    let at = at + 1;
    match kind {
        0x00 => Ok(leb_u32(body, at)?.1),
        0x01 => match body.get(at) {
            Some(0x70 | 0x6f) => skip_limits(body, at + 1),
            other => Err(format!("a table import of reference type {other:?}, which this does not read")),
        },
        0x02 => skip_limits(body, at),
        0x03 => match body.get(at..at + 2) {
            Some([_, 0 | 1]) => Ok(at + 2),
            _ => Err("a global import this does not read".into()),
        },
        other => Err(format!("an import of kind {other:#x}, which this does not read")),
    }
}

fn skip_limits(body: &[u8], at: usize) -> std::result::Result<usize, String> {
    let flags = *body.get(at).ok_or("limits without flags")?;
    if flags & !0b111 != 0 {
        return Err(format!("limits with flags {flags:#x}, which this does not read"));
    }
    let mut at = leb_u64(body, at + 1)?.1;
    if flags & 1 != 0 {
        at = leb_u64(body, at)?.1;
    }
    Ok(at)
}

/// `js` with each `<old>: function` key of the imports object renamed; each
/// old name must occur exactly there, once.
fn rename_keys(js: &str, renamed: &HashMap<String, String>) -> std::result::Result<String, String> {
    let mut js = js.to_string();
    for (old, new) in renamed {
        let key = format!("\n        {old}: function");
        if js.matches(&key).count() != 1 || js.matches(old.as_str()).count() != 1 {
            return Err(format!("`{old}` is not exactly one key of the imports object"));
        }
        js = js.replace(&key, &format!("\n        {new}: function"));
    }
    Ok(js)
}

fn name(bytes: &[u8], at: usize) -> std::result::Result<(&str, usize), String> {
    let (len, at) = leb_u32(bytes, at)?;
    let text = bytes.get(at..at + len as usize).ok_or("a name runs past the end")?;
    let text = std::str::from_utf8(text).map_err(|_| "a name that is not UTF-8")?;
    Ok((text, at + len as usize))
}

fn put_name(out: &mut Vec<u8>, text: &str) {
    put_leb(out, text.len() as u32);
    out.extend_from_slice(text.as_bytes());
}

fn leb_u32(bytes: &[u8], at: usize) -> std::result::Result<(u32, usize), String> {
    let (value, at) = leb_u64(bytes, at)?;
    Ok((u32::try_from(value).map_err(|_| "a number too large for u32")?, at))
}

fn leb_u64(bytes: &[u8], mut at: usize) -> std::result::Result<(u64, usize), String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(at).ok_or("a number runs past the end")?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, at));
        }
    }
    Err("a number longer than ten bytes".into())
}

fn put_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module importing two glue functions, a split-loader function and a
    /// memory, with a type section before and a custom section after.
    fn module() -> Vec<u8> {
        let mut imports = Vec::new();
        put_leb(&mut imports, 4);
        for (module, field, descriptor) in [
            (GLUE_MODULE, "__wbg_log_0123456789abcdef", &[0x00, 0x00][..]),
            ("./__wasm_split.js", "__wasm_split_load_records", &[0x00, 0x00][..]),
            (GLUE_MODULE, "__wbindgen_init_externref_table", &[0x00, 0x00][..]),
            ("env", "memory", &[0x02, 0x01, 0x11, 0x80, 0x80, 0x01][..]),
        ] {
            put_name(&mut imports, module);
            put_name(&mut imports, field);
            imports.extend_from_slice(descriptor);
        }
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
        wasm.push(2);
        put_leb(&mut wasm, imports.len() as u32);
        wasm.extend_from_slice(&imports);
        wasm.extend_from_slice(&[0x00, 0x03, 0x01, b'x', 0x07]);
        wasm
    }

    #[test]
    fn renames_only_the_glue_imports_and_keeps_every_other_byte() {
        let original = module();
        let (renamed_module, renamed) = rename_imports(&original).unwrap();
        assert_eq!(renamed.len(), 2);
        assert_eq!(renamed["__wbg_log_0123456789abcdef"], "a0");
        assert_eq!(renamed["__wbindgen_init_externref_table"], "a2");
        let text = String::from_utf8_lossy(&renamed_module);
        assert!(!text.contains("__wbg_log") && text.contains("__wasm_split_load_records") && text.contains("memory"));
        // The type section before and the custom section after are untouched.
        assert_eq!(&renamed_module[..14], &original[..14]);
        assert_eq!(&renamed_module[renamed_module.len() - 5..], &original[original.len() - 5..]);
        // Renaming again finds the short names and keeps them.
        let (again, _) = rename_imports(&renamed_module).unwrap();
        assert_eq!(again, renamed_module);
        assert!(imports_glue(&original).unwrap());
    }

    #[test]
    fn renames_the_keys_of_the_imports_object() {
        let js = "const import0 = {\n        __wbg_log_0123456789abcdef: function(arg0) {\n            console.log(arg0);\n        },\n    };";
        let renamed = HashMap::from([("__wbg_log_0123456789abcdef".to_string(), "a0".to_string())]);
        assert_eq!(
            rename_keys(js, &renamed).unwrap(),
            "const import0 = {\n        a0: function(arg0) {\n            console.log(arg0);\n        },\n    };"
        );
    }

    #[test]
    fn refuses_a_name_used_elsewhere_in_the_glue_or_missing() {
        let renamed = HashMap::from([("__wbg_log_1".to_string(), "a0".to_string())]);
        let twice = "\n        __wbg_log_1: function() {},\n    wasm.__wbg_log_1;";
        assert!(rename_keys(twice, &renamed).is_err());
        assert!(rename_keys("\n        __wbg_other: function() {}", &renamed).is_err());
    }

    #[test]
    fn refuses_what_it_does_not_read() {
        assert!(rename_imports(b"not wasm").is_err());
        let mut wasm = module();
        // The memory's limits flags become unknown.
        let flags = wasm.len() - 5 - 5;
        wasm[flags] = 0x20;
        assert!(rename_imports(&wasm).is_err());
        // A section whose size runs past the end.
        let mut cut = module();
        cut.truncate(cut.len() - 2);
        assert!(rename_imports(&cut).is_err());
    }
}
