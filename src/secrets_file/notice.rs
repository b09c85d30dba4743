//! The notice `serve` prints once, when it has just generated the secrets file: where the
//! secrets are and how to use them. It is the only place a generated value is ever shown.

use super::{Filled, SecretName};
use crate::config::Config;

impl Filled {
    /// The notice `serve` prints once, when it generated the file: where the secrets are and how
    /// to use them. `None` otherwise (later runs never show a value).
    pub fn first_run_notice(&self, config: &Config) -> Option<String> {
        if !self.generated {
            return None;
        }
        let path = self.path.display();
        let mut out = format!(
            "\nFirst run: generated an app secret, a verify token and an admin token in {path} \
             (mode 0600).\nLater runs reuse them; a value set in replyd.toml or REPLYD_* wins over \
             the file. The values are shown only now.\n"
        );
        let from_file = |name| self.from_file.contains(&name);
        let admin = SecretName::AdminToken;
        if from_file(admin) {
            out.push_str(&format!(
                "  admin token   {}\n                the admin API and the console: \
                 `Authorization: Bearer <admin token>`\n",
                admin.of(config).expose()
            ));
        }
        let verify = SecretName::VerifyToken;
        if from_file(verify) {
            out.push_str(&format!(
                "  verify token  {}\n                the \"Verify token\" of your webhook in \
                 Meta's App Dashboard\n",
                verify.of(config).expose()
            ));
        }
        if from_file(SecretName::AppSecret) {
            out.push_str(
                "  app secret    kept in the file; `replyd simulate` signs with it. To receive \
                 Meta's webhooks, set\n                REPLYD_APP_SECRET to your Meta app's \
                 secret (App settings → Basic)\n",
            );
        }
        for name in SecretName::ALL.into_iter().filter(|n| !from_file(*n)) {
            out.push_str(&format!(
                "  {:<13} configured ({} or `{}` in replyd.toml), used instead of the file\n",
                name.to_string().replace('_', " "),
                name.env(),
                name.key()
            ));
        }
        out.push_str(
            "`replyd simulate`, `replyd doctor` and the operator commands read the same data \
             directory.\n",
        );
        Some(out)
    }
}
