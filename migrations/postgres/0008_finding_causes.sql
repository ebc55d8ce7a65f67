-- A finding may name another finding of the same run as its cause (its
-- kind): a spike that killed the units, an initialisation that exploded
-- the gradients. NULL for root causes and for findings saved before this.
-- Append-only: never edit a migration that has shipped; add a new one.
ALTER TABLE findings ADD COLUMN caused_by TEXT;
