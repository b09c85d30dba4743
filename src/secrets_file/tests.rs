use std::os::unix::fs::PermissionsExt;

use super::*;

fn config_in(dir: &Path) -> Config {
    Config {
        data_dir: dir.join("data"),
        ..Config::default()
    }
}

#[test]
fn generated_once_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = config_in(dir.path());
    let filled = fill_or_generate(&mut first).unwrap();
    assert!(filled.generated);
    assert_eq!(filled.from_file, SecretName::ALL);
    let data = dir.path().join("data");
    assert_eq!(fs::metadata(&data).unwrap().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(path_in(&data)).unwrap().mode() & 0o777, 0o600);
    assert_eq!(first.admin_token.expose().len(), 64);
    assert_ne!(first.admin_token, first.verify_token);
    let notice = filled.first_run_notice(&first).unwrap();
    assert!(notice.contains(first.admin_token.expose()));
    assert!(!notice.contains(first.app_secret.expose()));

    let mut again = config_in(dir.path());
    let filled = fill_or_generate(&mut again).unwrap();
    assert!(!filled.generated);
    assert!(filled.first_run_notice(&again).is_none());
    for name in SecretName::ALL {
        assert_eq!(name.of(&again), name.of(&first), "{name} reused");
    }
}

#[test]
fn configured_values_win_per_secret() {
    let dir = tempfile::tempdir().unwrap();
    fill_or_generate(&mut config_in(dir.path())).unwrap();
    let mut config = config_in(dir.path());
    config.admin_token = Secret::new("mine");
    let filled = fill_or_generate(&mut config).unwrap();
    assert_eq!(config.admin_token.expose(), "mine");
    assert_eq!(
        filled.from_file,
        [SecretName::AppSecret, SecretName::VerifyToken]
    );
    assert!(!config.app_secret.expose().is_empty());
}

#[test]
fn without_generation_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    let filled = fill_from_file(&mut config).unwrap();
    assert!(filled.from_file.is_empty() && !filled.generated);
    assert!(config.app_secret.expose().is_empty());
    assert!(!dir.path().join("data").exists());
}

#[test]
fn exposed_malformed_or_unreadable_files_are_errors_never_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_or_generate(&mut config_in(dir.path())).unwrap();
    let path = path_in(&data);

    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = fill_or_generate(&mut config_in(dir.path())).err().unwrap();
    assert!(matches!(err, SecretsFileError::Exposed { mode: 0o640, .. }));
    assert!(err.to_string().contains("chmod 600"));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

    for (text, reason) in [
        (
            "app_secret = \"a\"\nverify_token = \"b\"\n",
            "`admin_token` is missing",
        ),
        (
            "app_secret = \"a\"\nverify_token = \"\"\nadmin_token = \"c\"",
            "`verify_token` is empty",
        ),
        (
            "app_secret = 5\nverify_token = \"b\"\nadmin_token = \"c\"",
            "`app_secret` is not a string",
        ),
        ("app_secret = \"hunter2", "not valid TOML"),
    ] {
        fs::write(&path, text).unwrap();
        let err = fill_or_generate(&mut config_in(dir.path())).err().unwrap();
        let shown = err.to_string();
        assert!(shown.contains(reason), "{shown}");
        assert!(!shown.contains("hunter2"), "never quotes the file: {shown}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "left as it was");
    }

    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = fill_or_generate(&mut config_in(dir.path())).err().unwrap();
    assert!(matches!(err, SecretsFileError::Unreadable { .. }), "{err}");
}

#[test]
fn a_data_dir_under_a_regular_file_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    fs::write(&file, "").unwrap();
    let mut config = Config {
        data_dir: file.join("data"),
        ..Config::default()
    };
    let err = fill_or_generate(&mut config).err().unwrap();
    assert!(matches!(err, SecretsFileError::Write { .. }), "{err}");
    assert!(err.to_string().contains("REPLYD_DATA_DIR"));
}
