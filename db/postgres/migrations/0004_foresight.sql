ALTER TABLE "clients" ADD COLUMN "secret_expires_at" bigint;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "previous_secret_sealed" text;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "previous_secret_expires_at" bigint;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "secret_in_use" text;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "secret_in_use_at" bigint;--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "refresh_expires_at" bigint;--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "refresh_expires_reason" text;