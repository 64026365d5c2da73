//! A pod's return value: the JSON its base container writes to `/airflow/xcom/return.json`.

use std::io::Read;
use std::path::Path;

/// The largest return value accepted, so a runaway pod cannot fill the metadata database.
pub const MAX_XCOM_BYTES: u64 = 1024 * 1024;

/// Why a return value cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum XcomError {
    /// The file is larger than [`MAX_XCOM_BYTES`].
    #[error("the XCom file /airflow/xcom/return.json is larger than 1 MiB")]
    TooLarge,
    /// The file is not JSON.
    #[error("the XCom file /airflow/xcom/return.json is not valid JSON: {0}")]
    NotJson(String),
    /// The file could not be read.
    #[error("cannot read the XCom file: {0}")]
    Read(String),
}

/// The return value in `text`: `None` when the file was empty or absent.
pub fn parse(text: &str) -> Result<Option<serde_json::Value>, XcomError> {
    if text.len() as u64 > MAX_XCOM_BYTES {
        return Err(XcomError::TooLarge);
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|err| XcomError::NotJson(err.to_string()))
}

/// The return value in a local file (the local pod runtime's XCom volume).
pub fn read_file(path: &Path) -> Result<Option<serde_json::Value>, XcomError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(XcomError::Read(err.to_string())),
    };
    let mut text = String::new();
    file.take(MAX_XCOM_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| XcomError::Read(err.to_string()))?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_kept_empty_is_nothing_and_garbage_is_an_error() {
        assert_eq!(
            parse(r#"{"train": "s3://b/train"}"#).unwrap(),
            Some(serde_json::json!({"train": "s3://b/train"}))
        );
        assert_eq!(parse("  \n").unwrap(), None);
        assert!(matches!(parse("{oops"), Err(XcomError::NotJson(_))));
        assert!(matches!(
            parse(&"1".repeat(MAX_XCOM_BYTES as usize + 1)),
            Err(XcomError::TooLarge)
        ));
    }
}
