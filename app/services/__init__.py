"""What the REST routes (app.api.routes) and the dashboard (app.ui) both do, once: submit and
cancel a job, store and delete a dataset, read and delete a model, predict. Each raises the
ApiError or UserError a route answers with, so the dashboard shows the API's own messages; the
dashboard never imports a route module."""
