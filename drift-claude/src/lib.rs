//! drift-claude
