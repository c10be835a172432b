//! drift-kube
