//! placeholder
use std::path::Path;
use super::{ImportError, Imported};
pub fn import(_c: &Path) -> Result<Imported, ImportError> { unimplemented!() }
