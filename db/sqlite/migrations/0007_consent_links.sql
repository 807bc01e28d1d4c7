CREATE TABLE `consent_link_authorizations` (
	`state_hash` text PRIMARY KEY NOT NULL,
	`link_id` text NOT NULL,
	`code_verifier` text NOT NULL,
	`nonce` text,
	`redirect_uri` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	FOREIGN KEY (`link_id`) REFERENCES `consent_links`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `consent_link_authorizations_expires_at` ON `consent_link_authorizations` (`expires_at`);--> statement-breakpoint
CREATE TABLE `consent_links` (
	`id` text PRIMARY KEY NOT NULL,
	`token_hash` text NOT NULL,
	`client_ref` text NOT NULL,
	`label` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer,
	FOREIGN KEY (`client_ref`) REFERENCES `clients`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `consent_links_token_hash_unique` ON `consent_links` (`token_hash`);--> statement-breakpoint
CREATE INDEX `consent_links_expires_at` ON `consent_links` (`expires_at`);