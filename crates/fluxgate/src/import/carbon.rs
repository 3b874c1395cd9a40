//! placeholder
use std::path::Path;
use super::{ImportError, Imported};
pub fn import(_c: &Path, _r: Option<&Path>, _a: Option<&Path>) -> Result<Imported, ImportError> { unimplemented!() }
