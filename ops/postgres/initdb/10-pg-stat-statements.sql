-- Run once by the postgres image when its data folder is first initialised
-- (docker-compose.yml mounts this folder at /docker-entrypoint-initdb.d): the extension the
-- daily query-statistics snapshot reads (README, Query statistics). The library itself is
-- preloaded by the service's `-c shared_preload_libraries=pg_stat_statements`.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
