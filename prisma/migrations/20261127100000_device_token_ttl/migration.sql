-- Per-device device-token lifetime (issue 10): NULL uses DEVICE_TOKEN_TTL_MS,
-- 0 means tokens of this device never expire, otherwise milliseconds.
ALTER TABLE "devices" ADD COLUMN "token_ttl_ms" BIGINT;
ALTER TABLE "devices" ADD CONSTRAINT "devices_token_ttl_ms_check" CHECK ("token_ttl_ms" IS NULL OR "token_ttl_ms" >= 0);
