-- Each tenant's own email templates (issue 17): written in the workspace, rendered in Jinja's
-- sandbox. A template is a name; its content lives in numbered versions, never changed once
-- written, so a campaign keeps the version it was sent with.
CREATE TABLE email_templates (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE email_template_versions (
    template_id  bigint NOT NULL REFERENCES email_templates (id),
    version      integer NOT NULL CHECK (version >= 1),
    html         text NOT NULL,
    body_text    text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

-- A campaign may use one of its tenant's templates as its layout. While it is a draft it
-- follows the template's newest version; start pins layout_version, which the worker renders.
ALTER TABLE campaigns
    ADD COLUMN layout_id bigint,
    ADD COLUMN layout_version integer,
    ADD FOREIGN KEY (tenant_id, layout_id) REFERENCES email_templates (tenant_id, id),
    ADD FOREIGN KEY (layout_id, layout_version) REFERENCES email_template_versions (template_id, version);
