// A mistake on a field with a finder is reported once: the finder and the
// column constant are still generated from the keys that can be read.
use reposmith::{Repository, Result};
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(unique, colum = "url")]
    slug: String,
}

#[allow(dead_code)]
async fn uses(repo: &impl Repository<Document>) -> Result<()> {
    let _intro = repo.find(Document::SLUG.eq("intro")).await?;
    let _one = repo.find_by_slug("intro").await?;
    Ok(())
}

fn main() {}
