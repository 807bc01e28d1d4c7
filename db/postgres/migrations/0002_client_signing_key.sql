ALTER TABLE "clients" ADD COLUMN "private_key_sealed" text;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "signing_key" jsonb;