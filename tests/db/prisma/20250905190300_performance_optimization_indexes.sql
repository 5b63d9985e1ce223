-- The statements of the backend's fourth migration that PostgreSQL accepts, as an operator
-- who ran it by hand statement by statement would have them (a subset: some were never run).
CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_users_email" ON "users"("email");
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "idx_users_plex_id" ON "users"("plex_id") WHERE "plex_id" IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_users_status_created_at" ON "users"("status", "created_at");
CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_media_requests_user_id_created_at" ON "media_requests"("user_id", "created_at");
CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_session_tokens_expires_at" ON "session_tokens"("expires_at");
