-- CreateTable
CREATE TABLE "devices" (
    "id" TEXT NOT NULL,
    "public_key" TEXT NOT NULL,
    "platform" TEXT NOT NULL DEFAULT '',
    "device_family" TEXT NOT NULL DEFAULT '',
    "display_name" TEXT,
    "client_id" TEXT,
    "client_mode" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "approved_at" TIMESTAMPTZ(3) NOT NULL,
    "last_seen_at" TIMESTAMPTZ(3),

    CONSTRAINT "devices_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "device_roles" (
    "device_id" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "scopes" TEXT[],
    "approved_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "device_roles_pkey" PRIMARY KEY ("device_id","role")
);

-- CreateTable
CREATE TABLE "device_tokens" (
    "device_id" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "token_id" UUID NOT NULL,
    "token_hash" TEXT NOT NULL,
    "scopes" TEXT[],
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "rotated_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),
    "expires_at" TIMESTAMPTZ(3),

    CONSTRAINT "device_tokens_pkey" PRIMARY KEY ("device_id","role")
);

-- CreateTable
CREATE TABLE "pairing_requests" (
    "id" UUID NOT NULL,
    "device_id" TEXT NOT NULL,
    "public_key" TEXT NOT NULL,
    "platform" TEXT NOT NULL DEFAULT '',
    "device_family" TEXT NOT NULL DEFAULT '',
    "client_id" TEXT NOT NULL,
    "client_mode" TEXT NOT NULL,
    "display_name" TEXT,
    "role" TEXT NOT NULL,
    "roles" TEXT[],
    "scopes" TEXT[],
    "reason" TEXT NOT NULL,
    "is_repair" BOOLEAN NOT NULL,
    "state" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "resolved_at" TIMESTAMPTZ(3),
    "resolved_by" TEXT,
    "approved_scopes" TEXT[],
    "granted_scopes" TEXT[],
    "superseded_by" UUID,

    CONSTRAINT "pairing_requests_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_log" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "device_id" TEXT,
    "request_id" UUID,
    "details" JSONB NOT NULL DEFAULT '{}',

    CONSTRAINT "audit_log_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "pairing_requests_device_id_created_at_idx" ON "pairing_requests"("device_id", "created_at");

-- CreateIndex
CREATE INDEX "pairing_requests_state_expires_at_idx" ON "pairing_requests"("state", "expires_at");

-- One pending request per device (not expressible in schema.prisma).
CREATE UNIQUE INDEX "pairing_requests_one_pending_per_device" ON "pairing_requests"("device_id") WHERE "state" = 'pending';

-- CreateIndex
CREATE INDEX "audit_log_device_id_id_idx" ON "audit_log"("device_id", "id");

-- CreateIndex
CREATE INDEX "audit_log_action_id_idx" ON "audit_log"("action", "id");

-- AddForeignKey
ALTER TABLE "device_roles" ADD CONSTRAINT "device_roles_device_id_fkey" FOREIGN KEY ("device_id") REFERENCES "devices"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "device_tokens" ADD CONSTRAINT "device_tokens_device_id_fkey" FOREIGN KEY ("device_id") REFERENCES "devices"("id") ON DELETE CASCADE ON UPDATE CASCADE;
