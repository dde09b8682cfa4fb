-- Bumped by every change to any job: cron.list's snapshotRevision.
CREATE SEQUENCE "cron_revision_seq";

-- CreateTable
CREATE TABLE "cron_jobs" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "schedule" JSONB NOT NULL,
    "payload" JSONB NOT NULL,
    "delete_after_run" BOOLEAN NOT NULL,
    "owner_device_id" TEXT,
    "extra" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "next_run_at" TIMESTAMPTZ(3),
    "last_run_at" TIMESTAMPTZ(3),
    "last_status" TEXT,
    "last_error" TEXT,

    CONSTRAINT "cron_jobs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "cron_runs" (
    "id" UUID NOT NULL,
    "job_id" UUID NOT NULL,
    "status" TEXT NOT NULL,
    "due_at" TIMESTAMPTZ(3) NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL,
    "finished_at" TIMESTAMPTZ(3),
    "lease_expires_at" TIMESTAMPTZ(3),
    "instance" TEXT NOT NULL,
    "error" TEXT,
    "manual" BOOLEAN NOT NULL DEFAULT false,

    CONSTRAINT "cron_runs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "cron_fires" (
    "id" UUID NOT NULL,
    "run_id" UUID NOT NULL,
    "job_id" UUID NOT NULL,
    "device_id" TEXT,
    "payload" JSONB NOT NULL,
    "fired_at" TIMESTAMPTZ(3) NOT NULL,
    "delivered_at" TIMESTAMPTZ(3),

    CONSTRAINT "cron_fires_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "cron_jobs_enabled_next_run_at_idx" ON "cron_jobs"("enabled", "next_run_at");

-- CreateIndex
CREATE INDEX "cron_jobs_created_at_id_idx" ON "cron_jobs"("created_at", "id");

-- CreateIndex
CREATE INDEX "cron_runs_job_id_started_at_idx" ON "cron_runs"("job_id", "started_at");

-- CreateIndex
CREATE INDEX "cron_runs_status_lease_expires_at_idx" ON "cron_runs"("status", "lease_expires_at");

-- Exactly one run that is not abandoned per scheduled occurrence (not expressible in schema.prisma).
CREATE UNIQUE INDEX "cron_runs_one_live_run_per_occurrence" ON "cron_runs"("job_id", "due_at") WHERE "status" <> 'abandoned' AND NOT "manual";

-- Undelivered fires of an owner that was offline.
CREATE INDEX "cron_fires_device_id_undelivered_idx" ON "cron_fires"("device_id") WHERE "delivered_at" IS NULL;
