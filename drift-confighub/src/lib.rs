//! drift-confighub
