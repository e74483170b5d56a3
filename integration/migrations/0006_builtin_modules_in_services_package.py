"""integration's built-in modules moved from integration/builtin/ to integration/services/ (issue 12).

Built-in modules are recorded as ServiceModule rows named by their dotted module name (and with
that name as their filename), by ``integration.deploy.sync_builtin`` after every ``migrate``.
Without this migration an upgraded database would keep the three old rows and their services,
and sync_builtin would then fail to record the same service names again under the new modules.
Renaming the rows in place keeps their ids, so the services, and the channels and jobs that
point at them, stay as they are. The source kept on a renamed row is brought up to date by
sync_builtin, which runs after the migrations. Reversible, for going back to the code before.
"""

from django.db import migrations

MOVED = {
    "integration.builtin.core": "integration.services.core",
    "integration.builtin.demo": "integration.services.demo",
    "integration.builtin.websocket": "integration.services.websocket",
}


def _rename(apps, pairs):
    ServiceModule = apps.get_model("integration", "ServiceModule")
    DeployedService = apps.get_model("integration", "DeployedService")
    for old, new in pairs:
        row = ServiceModule.objects.filter(name=old).first()
        if row is None:
            continue
        target = ServiceModule.objects.filter(name=new).first()
        if target is not None:
            # Recorded under both names: keep the new row, give it the old row's services
            # (service names are unique, so none is on both), and drop the old row.
            DeployedService.objects.filter(module=row).update(module=target)
            row.delete()
            continue
        row.name = new
        if row.filename == old:
            row.filename = new
        row.save(update_fields=["name", "filename"])


def forwards(apps, schema_editor):
    _rename(apps, MOVED.items())


def backwards(apps, schema_editor):
    _rename(apps, [(new, old) for old, new in MOVED.items()])


class Migration(migrations.Migration):

    dependencies = [
        ("integration", "0005_websocket_channels"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
