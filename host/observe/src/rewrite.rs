//! Rewriting a redb file so that deleted records leave no bytes behind:
//! redb reuses freed pages but does not clear them, so an erasure copies
//! the live tables into a fresh file and puts it in place of the old one.

use std::path::{Path, PathBuf};

use redb::{
    Database, MultimapTableDefinition, ReadTransaction, ReadableMultimapTable, ReadableTable, TableDefinition,
    WriteTransaction,
};

/// A redb failure while rewriting (kept small: redb's own error is large).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RewriteError(String);

impl<E: Into<redb::Error>> From<E> for RewriteError {
    fn from(error: E) -> Self {
        RewriteError(error.into().to_string())
    }
}

/// Replace `db` (open at `path`) with a fresh file holding what `copy`
/// copies into it. `db` is reopened on the new file.
pub fn rewrite(
    path: &Path,
    db: &mut Database,
    copy: impl FnOnce(&ReadTransaction, &WriteTransaction) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".rewrite");
    let fresh_path = PathBuf::from(name);
    let _ = std::fs::remove_file(&fresh_path);
    {
        let fresh = Database::create(&fresh_path)?;
        let (from, to) = (db.begin_read()?, fresh.begin_write()?);
        copy(&from, &to)?;
        to.commit()?;
    }
    std::fs::rename(&fresh_path, path).map_err(|e| RewriteError(e.to_string()))?;
    *db = Database::create(path)?;
    Ok(())
}

/// Copy every row of `table`, if it exists.
pub fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), RewriteError>
where
    for<'a> K::SelfType<'a>: std::borrow::Borrow<K::SelfType<'a>>,
    for<'a> V::SelfType<'a>: std::borrow::Borrow<V::SelfType<'a>>,
{
    let Ok(source) = from.open_table(table) else { return Ok(()) };
    let mut copy = to.open_table(table)?;
    for entry in source.iter()? {
        let (key, value) = entry?;
        copy.insert(key.value(), value.value())?;
    }
    Ok(())
}

/// Copy every (key, value) of a multimap `table`, if it exists.
pub fn copy_multimap<K: redb::Key + 'static, V: redb::Key + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: MultimapTableDefinition<K, V>,
) -> Result<(), RewriteError>
where
    for<'a> K::SelfType<'a>: std::borrow::Borrow<K::SelfType<'a>>,
    for<'a> V::SelfType<'a>: std::borrow::Borrow<V::SelfType<'a>>,
{
    let Ok(source) = from.open_multimap_table(table) else { return Ok(()) };
    let mut copy = to.open_multimap_table(table)?;
    for entry in source.iter()? {
        let (key, values) = entry?;
        for value in values {
            copy.insert(key.value(), value?.value())?;
        }
    }
    Ok(())
}
