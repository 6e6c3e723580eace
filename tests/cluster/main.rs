//! The cluster test: three nodes on one PostgreSQL behind HAProxy (runs with ATSSO_CLUSTER=1).
