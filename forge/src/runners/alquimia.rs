//! The `alquimia` runner (in progress).
