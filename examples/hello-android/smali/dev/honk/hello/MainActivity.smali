.class public Ldev/honk/hello/MainActivity;
.super Landroid/app/Activity;
.source "MainActivity.smali"

# The launcher activity. Everything the user sees lives in res/:
# onCreate() looks up the layout "activity_main" by name at run time, so this
# file does not need to change when layouts or strings change.

.method public constructor <init>()V
    .registers 1

    invoke-direct {p0}, Landroid/app/Activity;-><init>()V

    return-void
.end method

.method protected onCreate(Landroid/os/Bundle;)V
    .registers 6

    invoke-super {p0, p1}, Landroid/app/Activity;->onCreate(Landroid/os/Bundle;)V

    # int id = getResources().getIdentifier("activity_main", "layout", getPackageName());
    invoke-virtual {p0}, Ldev/honk/hello/MainActivity;->getResources()Landroid/content/res/Resources;
    move-result-object v0

    invoke-virtual {p0}, Ldev/honk/hello/MainActivity;->getPackageName()Ljava/lang/String;
    move-result-object v1

    const-string v2, "activity_main"
    const-string v3, "layout"

    invoke-virtual {v0, v2, v3, v1}, Landroid/content/res/Resources;->getIdentifier(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)I
    move-result v0

    # setContentView(id);
    invoke-virtual {p0, v0}, Ldev/honk/hello/MainActivity;->setContentView(I)V

    return-void
.end method
