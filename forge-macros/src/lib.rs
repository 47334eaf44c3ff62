//! forge-macros
