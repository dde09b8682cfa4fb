-- Approval policies (issue 10): ordered rules that approve or reject a
-- refused connect's ask inside the handshake. `match` holds the optional
-- lists roles, clientIds, clientModes, platforms, reasons, deviceIds and
-- scopesWithin; `scopes` (a JSON list) NULL means the rule does not narrow.

-- CreateTable
CREATE TABLE "approval_policies" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "priority" INTEGER NOT NULL,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "match" JSONB NOT NULL DEFAULT '{}',
    "action" TEXT NOT NULL,
    "scopes" JSONB,
    "allow_privileged" BOOLEAN NOT NULL DEFAULT false,
    "created_by" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "approval_policies_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "approval_policies_action_check" CHECK ("action" IN ('approve', 'reject'))
);

-- Evaluation order: enabled rules by priority, then age.
CREATE INDEX "approval_policies_enabled_priority_created_at_idx" ON "approval_policies"("enabled", "priority", "created_at");
