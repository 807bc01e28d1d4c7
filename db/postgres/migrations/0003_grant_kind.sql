ALTER TABLE "grants" ADD COLUMN "kind" text DEFAULT 'authorization_code' NOT NULL;--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "token_request" jsonb;