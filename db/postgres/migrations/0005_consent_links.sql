CREATE TABLE "consent_link_authorizations" (
	"state_hash" text PRIMARY KEY NOT NULL,
	"link_id" text NOT NULL,
	"code_verifier" text NOT NULL,
	"nonce" text,
	"redirect_uri" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "consent_links" (
	"id" text PRIMARY KEY NOT NULL,
	"token_hash" text NOT NULL,
	"client_ref" text NOT NULL,
	"label" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL,
	"used_at" bigint,
	CONSTRAINT "consent_links_token_hash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
ALTER TABLE "consent_link_authorizations" ADD CONSTRAINT "consent_link_authorizations_link_id_consent_links_id_fk" FOREIGN KEY ("link_id") REFERENCES "public"."consent_links"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "consent_links" ADD CONSTRAINT "consent_links_client_ref_clients_id_fk" FOREIGN KEY ("client_ref") REFERENCES "public"."clients"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "consent_link_authorizations_expires_at" ON "consent_link_authorizations" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "consent_links_expires_at" ON "consent_links" USING btree ("expires_at");