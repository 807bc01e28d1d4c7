CREATE TABLE `clients` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`provider` text NOT NULL,
	`profile` text NOT NULL,
	`client_id` text NOT NULL,
	`client_secret_sealed` text,
	`auth_method` text NOT NULL,
	`scopes` text NOT NULL,
	`redirect_uri` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `clients_name_unique` ON `clients` (`name`);--> statement-breakpoint
CREATE TABLE `grants` (
	`id` text PRIMARY KEY NOT NULL,
	`client_ref` text NOT NULL,
	`label` text NOT NULL,
	`subject` text,
	`state` text NOT NULL,
	`version` integer NOT NULL,
	`access_token_sealed` text NOT NULL,
	`refresh_token_sealed` text NOT NULL,
	`token_type` text,
	`scope` text,
	`access_expires_at` integer NOT NULL,
	`access_lifetime_ms` integer NOT NULL,
	`refresh_token_used_at` integer NOT NULL,
	`next_refresh_at` integer NOT NULL,
	`lease_owner` text,
	`lease_until` integer,
	`consecutive_failures` integer NOT NULL,
	`last_error` text,
	`last_error_at` integer,
	`last_refreshed_at` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`client_ref`) REFERENCES `clients`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `grants_label_unique` ON `grants` (`label`);--> statement-breakpoint
CREATE INDEX `grants_state_next_refresh` ON `grants` (`state`,`next_refresh_at`);--> statement-breakpoint
CREATE TABLE `meta` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `refresh_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`grant_id` text NOT NULL,
	`at` integer NOT NULL,
	`trigger` text NOT NULL,
	`outcome` text NOT NULL,
	`version` integer NOT NULL,
	`duration_ms` integer,
	`http_status` integer,
	`error_code` text,
	`message` text,
	`rotated` integer,
	FOREIGN KEY (`grant_id`) REFERENCES `grants`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `refresh_events_grant_at` ON `refresh_events` (`grant_id`,`at`);