"""The data layer: one MetaData, the MediaNest tables (and ours), engines and sessions."""
